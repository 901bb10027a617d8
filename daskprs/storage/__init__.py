"""Storage glue: locations, writes that appear whole, error translation, secrets.

``from daskprs.storage import Location`` and the write helpers are re-exported here;
:mod:`daskprs.storage.errors` translates service errors, :mod:`daskprs.storage.secrets`
resolves and redacts secrets.
"""

from daskprs.storage.location import Location, normalize_url, probe_bucket
from daskprs.storage.writes import (
    AtomicWriter,
    create_exclusive,
    read_bytes_or_none,
    write_atomic,
    write_new,
)

__all__ = ["AtomicWriter", "Location", "create_exclusive", "normalize_url", "probe_bucket",
           "read_bytes_or_none", "write_atomic", "write_new"]
