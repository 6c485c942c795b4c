//! The embedded share store: shares on local disk, the default backend.
