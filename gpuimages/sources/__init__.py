"""The driver's side of a read: paths in, one stage input out (no code here runs in a Spark task).

| module | one job |
| --- | --- |
| :mod:`.scan` | ``list_files``: Spark's ``binaryFile`` listing, sampling, partition columns (``Listing``) |
| :mod:`.file_index` | the listing as Spark's file index holds it: origins, counts, sizes (classic and Connect) |
| :mod:`.links` | local trees before Spark lists them: directory links, globs, files beside partition folders |
| :mod:`.columns` | internal column names, origins, sample conditions, partition values |
| :mod:`.unread` | rows for the listed files the scan returns no bytes for |
| :mod:`.archives` | which listed files are archives, how they are read and sampled |
| :mod:`.inputs` | ``file_inputs``: all of the above as a stage's input (``FileInputs``) |
| :mod:`.stores` | the session's store settings (``fs.s3a.*``, ...) carried to the tasks that open archives or write |
"""
