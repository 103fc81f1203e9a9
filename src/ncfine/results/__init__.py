"""What every app writes into a run dir: metrics.csv rows, results.json's config entry, the final table.

- `run_dir`: `rows_to_csv` (metrics.csv), `config_summary` (results.json's `config`), `source_name`;
- `report`: the table printed at the end of a run (`format_summary`).
"""
