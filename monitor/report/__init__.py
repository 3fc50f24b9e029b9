"""The run report: Markdown and a self-contained HTML page (plots inline, no network), written
from a run's records by `trainledger report` (docs/projections.md)."""
