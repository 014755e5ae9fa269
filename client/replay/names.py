"""Names for people: message types, commodities, databases and the report's metrics in
words ("Cocaine (kg)", not "drug.cocaine.kg"), and the order the totals are shown in. Pure
data and string work, shared by the replay's report and the exercise's review."""

from __future__ import annotations

MESSAGE_TYPES = {
    "warning": "Warnings", "feedback": "Feedback on warnings", "alert": "Alerts",
    "seizure_report": "Seizure reports", "request_for_information": "Requests for information",
    "rfi_response": "Answers to requests", "hit_notification": "Hit notifications",
    "trace_request": "Trace requests", "trace_response": "Trace answers",
    "controlled_delivery": "Controlled delivery messages", "situation_report": "Situation reports",
    "inspection_report": "Inspection reports"}
#: Categories of seized goods in words, in the seizure report schema's order.
CATEGORIES = {
    "drug": "Drugs", "firearm": "Firearms", "ammunition": "Ammunition",
    "firearm_part": "Firearm parts", "explosive": "Explosives", "currency": "Currency",
    "document": "Documents", "person": "Persons", "vehicle": "Vehicles", "vessel": "Vessels",
    "wildlife": "Wildlife", "waste": "Waste", "tobacco": "Tobacco", "alcohol": "Alcohol",
    "counterfeit_goods": "Counterfeit goods", "cultural_property": "Cultural property",
    "other": "Other goods"}
#: Databases as the hits in them are listed, in the schema's order.
DATABASES = {
    "interpol": "INTERPOL databases, all", "interpol_nominal": "INTERPOL nominal data",
    "interpol_sltd": "INTERPOL SLTD (stolen and lost travel documents)",
    "interpol_smv": "INTERPOL SMV (stolen motor vehicles)",
    "interpol_iarms": "INTERPOL iARMS (illicit arms records)",
    "interpol_notices": "INTERPOL notices", "wco_cen": "WCO CEN", "atf_etrace": "ATF eTrace",
    "hsi": "HSI", "national": "National databases", "other": "Other databases"}
#: Codes (kinds, units) that do not read as words with their underscores made spaces.
_WORDS = {"mdma": "MDMA", "nps": "new psychoactive substances",
          "psychotropic_other": "other psychotropic substances", "un_special": "UN special",
          "count": "number", "usd": "USD", "m3": "m³", "rfi_response": "RFI response"}
#: The groups the totals are shown in, in order.
TOTAL_GROUPS = ("Messages", "Seizures", "Seizures by commodity", "Persons", "Arrests and hits",
                "Inspections and offences", "Other figures")
_CONTROLS = "Inspections and offences"
_FIXED = {"messages": ("Messages", "Messages, all types"),
          **{f"messages.{t}": ("Messages", name) for t, name in MESSAGE_TYPES.items()},
          "countries": ("Messages", "Countries whose units sent messages"),
          "reports": ("Seizures", "Seizures reported"), "items": ("Seizures", "Items seized"),
          "arrests": ("Arrests and hits", "Arrests"),
          "hits": ("Arrests and hits", "Database hits, all databases"),
          **{f"hits.{d}": ("Arrests and hits", name) for d, name in DATABASES.items()},
          "currency.counterfeit.usd": ("Seizures by commodity", "Counterfeit currency (USD)"),
          "agencies": ("Messages", "Agencies whose units sent messages"),
          "person.minor.count": ("Persons", "Persons: minors (number)"),
          "inspections": (_CONTROLS, "Inspections and controls"),
          "offence.count": (_CONTROLS, "Offences, all kinds"),
          "investigations": (_CONTROLS, "Investigations opened"),
          "fines.count": (_CONTROLS, "Fines"), "fines.usd": (_CONTROLS, "Fines (USD)"),
          "assets.count": (_CONTROLS, "Assets seized or frozen"),
          "assets.value.usd": (_CONTROLS, "Assets, value (USD)")}


def words(code: str) -> str:
    return _WORDS.get(code) or code.replace("_", " ")


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def type_name(kind: str) -> str:
    """A message type in words, plural: "rfi_response" -> "Answers to requests"."""
    return MESSAGE_TYPES.get(kind) or _capital(words(kind))


def commodity_name(commodity: str) -> str:
    """A commodity in words: "drug" -> "Drugs", "drug.cocaine" -> "Cocaine" (a drug goes
    by its substance), "firearm.pistol" -> "Firearms: pistol"."""
    category, _, kind = commodity.partition(".")
    name = CATEGORIES.get(category) or _capital(words(category))
    if not kind:
        return name
    if category == "drug":
        return "Other drugs" if kind == "other" else _capital(words(kind))
    if kind.startswith("notice."):  # person.notice.<colour>
        return f"{name}: {words(kind.partition('.')[2])} notice"
    return f"{name}: {words(kind)}"


def metric_label(metric: str) -> tuple[str, str]:
    """The group of TOTAL_GROUPS a tally metric is shown in, and its label in words
    ("drug.cocaine.kg" -> ("Seizures by commodity", "Cocaine (kg)"))."""
    if metric in _FIXED:
        return _FIXED[metric]
    head, _, unit = metric.rpartition(".")
    parts = metric.split(".")
    # persons apart from goods: suspects and couriers of seizure reports, and victims and
    # migrants an inspection found, are not seizures
    if parts[0] == "person" and parts[-2:] == ["minor", "count"]:
        return "Persons", f"Persons: {words(parts[1])}, minors (number)"
    if parts[:2] == ["person", "exploitation"]:
        return "Persons", f"Persons exploited: {words(parts[2])} (number)"
    if parts[0] == "person":
        return "Persons", f"{commodity_name(head)} ({words(unit)})"
    if head.partition(".")[0] in CATEGORIES:
        return "Seizures by commodity", f"{commodity_name(head)} ({words(unit)})"
    if head == "hits":
        return "Arrests and hits", f"Hits in {words(unit)}"
    if head == "messages":
        return "Messages", type_name(unit)
    if metric.startswith("inspections."):
        return _CONTROLS, f"Inspections: {words(unit)}"
    first, _, kind = head.partition(".")
    if first in ("offence", "entity", "assets") and unit == "count":
        what = {"offence": "Offences", "entity": "Entities", "assets": "Assets"}[first]
        return _CONTROLS, f"{what}: {words(kind)} (number)"
    return "Other figures", metric


def metric_rank(metric: str) -> tuple[int, str, int, str]:
    """Fixed figures in order; commodities by category, then kind, a number first."""
    if metric in _FIXED:
        return list(_FIXED).index(metric), "", 0, ""
    head, _, unit = metric.rpartition(".")
    category, _, kind = head.partition(".")
    if category in CATEGORIES:
        return len(_FIXED) + list(CATEGORIES).index(category), kind, unit != "count", unit
    return len(_FIXED) + len(CATEGORIES), metric, 0, ""
