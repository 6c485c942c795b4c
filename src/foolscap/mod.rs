//! Foolscap, as foolscap 24.9 speaks it under Tahoe-LAFS 1.20.
