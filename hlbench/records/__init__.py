"""Result records: the files (jsonl), which record of a cell is current and what a record is
(identity), what it measured (fields: speed, loss, energy, efficiency, techniques, profile; memory:
peak memory and what it measures) and where it ran (environment).

Every reader of records (hlbench.results, hlbench.reporting, hlbench.comparison) checks each
record's shape first (shape: malformed records are skipped with a count, a file with nothing
usable refused) and then reads fields through these accessors, so the record layout the writers
produce is known in one place.
"""

from hlbench.records.jsonl import (
    SCHEMA_VERSION,
    STATUSES,
    append_record,
    check_schema,
    read_records,
)

__all__ = ["SCHEMA_VERSION", "STATUSES", "append_record", "check_schema", "read_records"]
