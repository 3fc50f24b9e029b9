"""The check every parser test shares: every line read, every record valid against schema v1."""

import eventschema
from monitor.parsers import parse_lines


def parse_valid(parser, lines):
    records, bad = parse_lines(parser, lines)
    assert bad == []
    for record in records:
        if record.kind != "launch":
            assert eventschema.errors(record.to_event()) == [], record
    return records
