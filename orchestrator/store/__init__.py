"""The sweep folder and its record: paths, the driver lock, result rows as Parquet, queries.

No engine and no spec here: everything that reads or writes a sweep's record (trials, epochs,
per-example outcomes) goes through these modules, so a sweep that is running, finished or
interrupted reads the same way. `paths.py` is the one owner of the folder's layout.
"""
