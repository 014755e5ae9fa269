"""How the generator's filler traffic is worded, by kind of operation (the scenario's
``operation.kind``): what a warning is about and why, how a seizure was detected, what an
alert reminds units of. A customs operation targets shipments and passengers and finds
goods by x-ray and profiles; a police one works from intelligence and patrols; a border
one checks travellers and documents; an environmental one inspects vessels, sites and
waste shipments. What warnings suspect comes from the categories the scenario itself
names, never a fixed list. Pure data.
"""

from __future__ import annotations

from dataclasses import dataclass

KINDS = ("customs", "police", "border", "environmental")


@dataclass(frozen=True, slots=True)
class Wording:
    #: (warning subject kind, its description, why it was selected)
    warnings: tuple[tuple[str, str, str], ...]
    #: seizure report detection methods (seizure-report.schema.json)
    detection: tuple[str, ...]
    #: (alert subject, alert body)
    alerts: tuple[tuple[str, str], ...]
    #: what a warning suspects when the scenario names no category
    commodities: tuple[str, ...]


WORDING: dict[str, Wording] = {
    "customs": Wording(
        warnings=(("passenger", "Traveller whose booking and route match the operation's "
                   "risk indicators.", "Selected by the OCU's targeting for control at "
                   "arrival."),
                  ("shipment", "Consignment whose declaration and route match the "
                   "operation's risk indicators.", "Selected by the OCU's targeting."),
                  ("parcel", "Express parcel from a sender flagged in earlier cases.",
                   "Sender and declared contents match an earlier seizure.")),
        detection=("risk_profile", "x_ray", "documentary_check", "physical_examination",
                   "detector_dog"),
        alerts=(("Reminder of the operation's risk indicators",
                 "Units are reminded to report every seizure through the channel."),),
        commodities=("drug", "firearm", "currency")),
    "police": Wording(
        warnings=(("passenger", "Person of interest expected to travel on this route.",
                   "Named in intelligence shared by a participating police service."),
                  ("conveyance", "Vehicle linked to a group under investigation.",
                   "Seen at addresses tied to earlier arrests."),
                  ("company", "Business suspected of serving as a front.",
                   "Its payments and premises came up in an ongoing investigation.")),
        detection=("intelligence", "patrol", "tip_off", "documentary_check",
                   "random_check"),
        alerts=(("Reminder: report arrests and victims identified",
                 "Units are asked to report every arrest, victim and lead through the "
                 "channel, the same day."),),
        commodities=("person", "document", "currency")),
    "border": Wording(
        warnings=(("passenger", "Traveller whose documents and itinerary need a second "
                   "check.", "Pattern seen in earlier cases at the operation's crossings."),
                  ("conveyance", "Bus or car making repeated crossings with new passengers.",
                   "Crossing records match a known smuggling route.")),
        detection=("documentary_check", "risk_profile", "patrol", "random_check"),
        alerts=(("Reminder of document checks",
                 "Units are reminded to check travel documents against SLTD and to report "
                 "every refused entry through the channel."),),
        commodities=("person", "document")),
    "environmental": Wording(
        warnings=(("conveyance", "Vessel whose route and port calls match the operation's "
                   "pollution risk indicators.", "Tracking shows unexplained stops at "
                   "sea."),
                  ("shipment", "Waste shipment declared as recyclable material.",
                   "The exporter and the declared contents match earlier illegal "
                   "shipments."),
                  ("company", "Operator with a record of discharges.",
                   "Named in earlier inspections that found offences.")),
        detection=("risk_profile", "documentary_check", "physical_examination", "patrol",
                   "intelligence"),
        alerts=(("Reminder of the inspection priorities",
                 "Units are reminded to report every inspection and offence through the "
                 "channel, with where it was found."),),
        commodities=("waste", "vessel", "wildlife")),
}


def wording(kind: str) -> Wording:
    """The wording of ``kind`` (customs when the scenario does not say)."""
    return WORDING.get(kind, WORDING["customs"])
