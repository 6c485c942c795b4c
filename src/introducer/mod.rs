//! The introducer links: Tahoe's signed announcements, the introducer protocol over
//! Foolscap in both roles, and the relay between swampgate's subscribers and
//! publishers and an upstream Foolscap introducer.
//!
//! - [`announcement`]: `sign_to_foolscap` / `unsign_from_foolscap`, exact bytes.

pub mod announcement;

pub use announcement::{Announcement, AnnouncementError, SignedAnnouncement};
