"""The error hierarchy that domain code raises and the edges (API, CLI) translate.

SearchError                  any problem a user can act on; its message says what to do
├── BadInput                 a file, line, field or parameter that cannot be used
│   └── BadSettings          a SEARCH_* setting (or its command-line option) with a value that cannot be used
├── IndexNotFound            no published index where one was expected
├── IndexMismatch            the index was built with another model or settings
├── IndexCorrupt             an index file is unreadable or fails its checksum
├── ModelUnavailable         the embedding model cannot be loaded or prepared
├── NotFound                 an id (passage, article) that the index does not hold
├── Forbidden                a write while writes are off, or a key without the scope a route needs
├── IndexBusy                another writer holds the index folder's lock past SEARCH_WRITE_LOCK_TIMEOUT
└── ClusterUnavailable       Ray (SEARCH_RAY_ADDRESS, --ray) is not installed, unreachable, or its work failed
"""


class SearchError(Exception):
    """A problem the user can fix; the message names what is wrong and what to do."""

    exit_code = 1
    http_status = 400
    code = "search_error"


class BadInput(SearchError):
    exit_code = 2
    http_status = 422
    code = "bad_input"


class BadSettings(BadInput):
    code = "bad_settings"


class IndexNotFound(SearchError):
    exit_code = 3
    http_status = 503
    code = "index_not_found"


class IndexMismatch(SearchError):
    exit_code = 4
    http_status = 503
    code = "index_mismatch"


class IndexCorrupt(SearchError):
    exit_code = 5
    http_status = 503
    code = "index_corrupt"


class ModelUnavailable(SearchError):
    exit_code = 6
    http_status = 503
    code = "model_unavailable"


class NotFound(SearchError):
    exit_code = 7
    http_status = 404
    code = "not_found"


class Forbidden(SearchError):
    exit_code = 8
    http_status = 403
    code = "forbidden"


class IndexBusy(SearchError):
    """Another process (a `search index`, `search remove` or a server taking writes) is writing this index folder."""

    exit_code = 9
    http_status = 409
    code = "index_busy"


class ClusterUnavailable(SearchError):
    """`--ray` or `--replicas`: Ray is not installed, the cluster cannot be reached, work on it failed past its
    retries, or the replicas did not start."""

    exit_code = 10
    http_status = 503
    code = "cluster_unavailable"
