"""recprep's own Parquet writer for training shards (flat numeric columns, lists of them, and
dictionaries of either); pyarrow writes anything else. See ``file.write_table``."""

from .file import supports, write_table

__all__ = ["supports", "write_table"]
