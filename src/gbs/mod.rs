//! Great Black Swamp: Tahoe-LAFS's HTTP storage protocol.
