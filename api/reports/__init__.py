"""Community office reports (docs/reports.md).

| module | what |
|---|---|
| `periods.py` | local China days, weeks and months as epoch-ms ranges (pure) |
| `reasons.py` | end reasons and alarm kinds grouped for the report (pure) |
| `contribution.py` | what one session adds to the rollups (pure) |
| `rollups.py` | keeps the rollup tables, in the transaction that applies a record |
| `demand.py` | unserved demand: scans and card taps that found no free socket |
| `queries.py` | a report from the rollups: the tables of `model.Report` |
| `raw.py` | the same report by scanning raw sessions (the benchmark's baseline) |
| `export.py` | CSV, XLSX and JSON of a report |
| `charts.py` | the page's charts as server-side SVG |
"""
