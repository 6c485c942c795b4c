//! Tahoe-LAFS's share containers, byte for byte (`allmydata/storage/immutable.py`,
//! `mutable.py`, `lease.py`, `*_schema.py` in 1.20).
//!
//! Immutable share file (schema v2; v1 is read too, with cleartext lease secrets):
//! ```text
//! 0x00  u32  version (2)
//! 0x04  u32  min(allocated size, 2^32-1)   (unused since Tahoe 1.3, still written)
//! 0x08  u32  number of leases
//! 0x0c       share data (the allocated size; unwritten bytes read as zeros)
//! ...        leases, 72 bytes each: u32 owner, renew secret hash[32],
//!            cancel secret hash[32], u32 expiration (seconds since the epoch)
//! ```
//! The data length is `file size - 12 - 72 * leases`.
//!
//! Mutable share file (schema v2; v1 is read and written too):
//! ```text
//! 0     32   magic "Tahoe mutable container v2\n" + 5 bytes of a tagged hash
//! 32    20   nodeid that recorded the write enabler
//! 52    32   write enabler
//! 84    u64  data length
//! 92    u64  offset of the extra-lease block
//! 100   368  four lease slots, 92 bytes each: u32 owner (0 = empty),
//!            u32 expiration, renew hash[32], cancel hash[32], nodeid[20]
//! 468        data (the container may be larger than the data length)
//! ...        extra-lease block: u32 count, then count leases of 92 bytes
//! ```
//! Integers are big-endian. Lease secrets are stored as their unkeyed BLAKE2b-256
//! hash (v2), so the store keeps no usable copy of them.

use std::io;
use std::sync::LazyLock;

use blake2::digest::consts::U32;
use blake2::Blake2b;
use bytes::Bytes;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::overlay::Overlay;

/// Leases last 31 days from their grant or last renewal (Tahoe's
/// `DEFAULT_RENEWAL_TIME`).
pub const LEASE_DURATION_SECS: u64 = 31 * 24 * 60 * 60;

/// Tahoe's largest mutable share, `allmydata.mutable.layout.MAX_MUTABLE_SHARE_SIZE`.
pub const MAX_MUTABLE_SHARE_SIZE: u64 = 69105 * 1000 * 1000 * 1000 * 1000;

/// Constant-time comparison of secrets of any length (different lengths differ).
pub fn secrets_equal(a: &[u8], b: &[u8]) -> bool {
    bool::from(a.ct_eq(b))
}

/// How a lease secret is kept on disk.
fn hash_secret(secret: &[u8]) -> [u8; 32] {
    Blake2b::<U32>::digest(secret).into()
}

/// Python's `struct.pack("32s", b)`: truncate or pad with NULs to 32 bytes.
fn fixed32(b: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let n = b.len().min(32);
    out[..n].copy_from_slice(&b[..n]);
    out
}

/// Which generation of a container: v1 keeps lease secrets in cleartext, v2 hashed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Schema {
    V1,
    V2,
}

impl Schema {
    fn stored_secret(self, secret: &[u8]) -> [u8; 32] {
        match self {
            Schema::V1 => fixed32(secret),
            Schema::V2 => hash_secret(secret),
        }
    }
}

/// A lease as a request grants it, secrets still in cleartext.
pub struct NewLease<'a> {
    pub owner_num: u32,
    pub renew_secret: &'a [u8],
    pub cancel_secret: &'a [u8],
    pub expiration: u64,
    /// Recorded in mutable containers only.
    pub nodeid: [u8; 20],
}

impl NewLease<'_> {
    fn stored(&self, schema: Schema) -> StoredLease {
        StoredLease {
            owner_num: self.owner_num,
            renew: schema.stored_secret(self.renew_secret),
            cancel: schema.stored_secret(self.cancel_secret),
            // Tahoe packs `int(expiration)` into 32 bits; saturate rather than fail.
            expiration: u32::try_from(self.expiration).unwrap_or(u32::MAX),
            nodeid: self.nodeid,
        }
    }
}

/// A lease as the container holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredLease {
    pub owner_num: u32,
    pub renew: [u8; 32],
    pub cancel: [u8; 32],
    pub expiration: u32,
    pub nodeid: [u8; 20],
}

impl StoredLease {
    fn is_renew_secret(&self, schema: Schema, candidate: &[u8]) -> bool {
        match schema {
            Schema::V1 => secrets_equal(&self.renew, candidate),
            Schema::V2 => secrets_equal(&self.renew, &hash_secret(candidate)),
        }
    }

    fn to_immutable(&self) -> [u8; IMM_LEASE_SIZE as usize] {
        let mut b = [0u8; IMM_LEASE_SIZE as usize];
        b[0..4].copy_from_slice(&self.owner_num.to_be_bytes());
        b[4..36].copy_from_slice(&self.renew);
        b[36..68].copy_from_slice(&self.cancel);
        b[68..72].copy_from_slice(&self.expiration.to_be_bytes());
        b
    }

    fn from_immutable(b: &[u8; IMM_LEASE_SIZE as usize]) -> StoredLease {
        StoredLease {
            owner_num: be32(&b[0..4]),
            renew: b[4..36].try_into().unwrap(),
            cancel: b[36..68].try_into().unwrap(),
            expiration: be32(&b[68..72]),
            nodeid: [0; 20],
        }
    }

    fn to_mutable(&self) -> [u8; MUT_LEASE_SIZE as usize] {
        let mut b = [0u8; MUT_LEASE_SIZE as usize];
        b[0..4].copy_from_slice(&self.owner_num.to_be_bytes());
        b[4..8].copy_from_slice(&self.expiration.to_be_bytes());
        b[8..40].copy_from_slice(&self.renew);
        b[40..72].copy_from_slice(&self.cancel);
        b[72..92].copy_from_slice(&self.nodeid);
        b
    }

    fn from_mutable(b: &[u8; MUT_LEASE_SIZE as usize]) -> StoredLease {
        StoredLease {
            owner_num: be32(&b[0..4]),
            expiration: be32(&b[4..8]),
            renew: b[8..40].try_into().unwrap(),
            cancel: b[40..72].try_into().unwrap(),
            nodeid: b[72..92].try_into().unwrap(),
        }
    }
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes(b.try_into().unwrap())
}

fn be64(b: &[u8]) -> u64 {
    u64::from_be_bytes(b.try_into().unwrap())
}

/// Adding a lease would need more room than the space available (Tahoe's `NoSpace`).
#[derive(Debug)]
pub struct NoSpaceForLease;

/// What a share file holds, judged by its first bytes the way Tahoe does (mutable
/// magic first, then an immutable version number).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Immutable(Schema),
    Mutable(Schema),
    Unknown,
}

pub fn kind_of(header: &[u8]) -> Kind {
    if let Some(schema) = mutable_schema(header) {
        return Kind::Mutable(schema);
    }
    match header.get(..4).map(be32) {
        Some(1) => Kind::Immutable(Schema::V1),
        Some(2) => Kind::Immutable(Schema::V2),
        _ => Kind::Unknown,
    }
}

// ---------------------------------------------------------------------------------
// Immutable containers

pub const IMM_HEADER_SIZE: u64 = 0x0c;
pub const IMM_LEASE_SIZE: u64 = 72;

/// The header of a new immutable share of `allocated_size` bytes, with no leases yet.
pub fn immutable_header(allocated_size: u64) -> [u8; 12] {
    let mut h = [0u8; 12];
    h[0..4].copy_from_slice(&2u32.to_be_bytes());
    let legacy_len = u32::try_from(allocated_size).unwrap_or(u32::MAX);
    h[4..8].copy_from_slice(&legacy_len.to_be_bytes());
    h
}

/// The first lease of a new immutable share, written at the end of the allocated
/// data area when the upload starts (as Tahoe's `BucketWriter` does).
pub fn immutable_first_lease(lease: &NewLease<'_>) -> [u8; IMM_LEASE_SIZE as usize] {
    lease.stored(Schema::V2).to_immutable()
}

/// Where an immutable share's data ends, from its file size and lease count.
pub fn immutable_data_len(file_size: u64, num_leases: u32) -> Option<u64> {
    file_size.checked_sub(IMM_HEADER_SIZE + IMM_LEASE_SIZE * num_leases as u64)
}

/// An immutable share opened for lease changes (Tahoe's `ShareFile`).
pub struct ImmutableShare {
    pub file: Overlay,
    schema: Schema,
    lease_offset: u64,
}

impl ImmutableShare {
    pub fn open(file: Overlay, schema: Schema) -> io::Result<ImmutableShare> {
        let num = be32(&file.read_array::<4>(8)?);
        let data_len = immutable_data_len(file.len(), num)
            .ok_or_else(|| corrupt("immutable share shorter than its leases"))?;
        Ok(ImmutableShare {
            lease_offset: IMM_HEADER_SIZE + data_len,
            file,
            schema,
        })
    }

    fn num_leases(&self) -> io::Result<u32> {
        Ok(be32(&self.file.read_array::<4>(8)?))
    }

    pub fn leases(&self) -> io::Result<Vec<StoredLease>> {
        (0..self.num_leases()? as u64)
            .map(|i| {
                let b = self
                    .file
                    .read_array::<72>(self.lease_offset + i * IMM_LEASE_SIZE)?;
                Ok(StoredLease::from_immutable(&b))
            })
            .collect()
    }

    fn write_lease(&mut self, i: u64, lease: &StoredLease) {
        self.file.write(
            self.lease_offset + i * IMM_LEASE_SIZE,
            Bytes::copy_from_slice(&lease.to_immutable()),
        );
    }

    /// Renew the first lease whose renew secret matches (only ever later), else add
    /// one. Adding needs room for a lease record within `available` bytes.
    pub fn add_or_renew_lease(
        &mut self,
        available: u64,
        lease: &NewLease<'_>,
    ) -> io::Result<Result<(), NoSpaceForLease>> {
        let expiration = lease.stored(self.schema).expiration;
        for (i, old) in self.leases()?.into_iter().enumerate() {
            if old.is_renew_secret(self.schema, lease.renew_secret) {
                if expiration > old.expiration {
                    let renewed = StoredLease { expiration, ..old };
                    self.write_lease(i as u64, &renewed);
                }
                return Ok(Ok(()));
            }
        }
        if IMM_LEASE_SIZE > available {
            return Ok(Err(NoSpaceForLease));
        }
        let n = self.num_leases()?;
        self.write_lease(n as u64, &lease.stored(self.schema));
        self.file
            .write(8, Bytes::copy_from_slice(&(n + 1).to_be_bytes()));
        Ok(Ok(()))
    }
}

// ---------------------------------------------------------------------------------
// Mutable containers

pub const MUT_HEADER_SIZE: u64 = 100;
pub const MUT_LEASE_SIZE: u64 = 92;
pub const MUT_DATA_OFFSET: u64 = MUT_HEADER_SIZE + 4 * MUT_LEASE_SIZE;
const MUT_DATA_LENGTH_AT: u64 = 84;
const MUT_EXTRA_LEASE_OFFSET_AT: u64 = 92;

fn mutable_magic(version: u32) -> [u8; 32] {
    let human = format!("Tahoe mutable container v{version}\n");
    let random: [u8; 5] = if version == 1 {
        // The historical v1 bytes, kept by Tahoe as they are.
        [0x75, 0x09, 0x44, 0x03, 0x8e]
    } else {
        // tagged_hash(b"allmydata_mutable_container_header", human)[:5]:
        // SHA-256d over a netstring of the tag followed by the value.
        let tag = b"allmydata_mutable_container_header";
        let mut h = Sha256::new();
        h.update(format!("{}:", tag.len()).as_bytes());
        h.update(tag);
        h.update(b",");
        h.update(human.as_bytes());
        let d = Sha256::digest(h.finalize());
        d[..5].try_into().unwrap()
    };
    let mut m = [0u8; 32];
    m[..27].copy_from_slice(human.as_bytes());
    m[27..].copy_from_slice(&random);
    m
}

static MAGIC_V1: LazyLock<[u8; 32]> = LazyLock::new(|| mutable_magic(1));
static MAGIC_V2: LazyLock<[u8; 32]> = LazyLock::new(|| mutable_magic(2));

fn mutable_schema(header: &[u8]) -> Option<Schema> {
    let magic = header.get(..32)?;
    if magic == MAGIC_V2.as_slice() {
        Some(Schema::V2)
    } else if magic == MAGIC_V1.as_slice() {
        Some(Schema::V1)
    } else {
        None
    }
}

/// The 472 bytes of a new, empty mutable container (schema v2).
pub fn mutable_new_container(nodeid: &[u8; 20], write_enabler: &[u8]) -> Vec<u8> {
    let mut h = Vec::with_capacity(MUT_DATA_OFFSET as usize + 4);
    h.extend_from_slice(&*MAGIC_V2);
    h.extend_from_slice(nodeid);
    h.extend_from_slice(&fixed32(write_enabler));
    h.extend_from_slice(&0u64.to_be_bytes());
    h.extend_from_slice(&MUT_DATA_OFFSET.to_be_bytes());
    h.resize(MUT_DATA_OFFSET as usize, 0);
    h.extend_from_slice(&0u32.to_be_bytes());
    h
}

/// The recorded write enabler and the nodeid that recorded it.
pub struct WriteEnablerRecord {
    pub write_enabler: [u8; 32],
    pub nodeid: [u8; 20],
}

/// A mutable share opened for reading or planning changes (Tahoe's
/// `MutableShareFile`).
pub struct MutableShare {
    pub file: Overlay,
    schema: Schema,
}

/// A planned write would make a container larger than allowed.
#[derive(Debug)]
pub struct ContainerTooLarge {
    pub requested: u64,
    pub max: u64,
}

impl MutableShare {
    pub fn open(file: Overlay, schema: Schema) -> MutableShare {
        MutableShare { file, schema }
    }

    pub fn write_enabler(&self) -> io::Result<WriteEnablerRecord> {
        let h = self.file.read_array::<{ MUT_HEADER_SIZE as usize }>(0)?;
        Ok(WriteEnablerRecord {
            nodeid: h[32..52].try_into().unwrap(),
            write_enabler: h[52..84].try_into().unwrap(),
        })
    }

    pub fn data_length(&self) -> io::Result<u64> {
        Ok(be64(&self.file.read_array::<8>(MUT_DATA_LENGTH_AT)?))
    }

    fn set_data_length(&mut self, n: u64) {
        self.file
            .write(MUT_DATA_LENGTH_AT, Bytes::copy_from_slice(&n.to_be_bytes()));
    }

    fn extra_lease_offset(&self) -> io::Result<u64> {
        Ok(be64(&self.file.read_array::<8>(MUT_EXTRA_LEASE_OFFSET_AT)?))
    }

    fn set_extra_lease_offset(&mut self, n: u64) {
        self.file.write(
            MUT_EXTRA_LEASE_OFFSET_AT,
            Bytes::copy_from_slice(&n.to_be_bytes()),
        );
    }

    fn num_extra_leases(&self) -> io::Result<u32> {
        Ok(be32(
            &self.file.read_array::<4>(self.extra_lease_offset()?)?,
        ))
    }

    fn set_num_extra_leases(&mut self, n: u32) -> io::Result<()> {
        let at = self.extra_lease_offset()?;
        self.file
            .write(at, Bytes::copy_from_slice(&n.to_be_bytes()));
        Ok(())
    }

    /// Up to `length` bytes of share data at `offset`, truncated at the data length.
    pub fn read_data(&self, offset: u64, length: u64) -> io::Result<Vec<u8>> {
        let data_length = self.data_length()?;
        let length = length.min(data_length.saturating_sub(offset));
        if length == 0 {
            return Ok(Vec::new());
        }
        let v = self.file.read(MUT_DATA_OFFSET + offset, length)?;
        if v.len() as u64 != length {
            return Err(corrupt(
                "mutable share data shorter than its recorded length",
            ));
        }
        Ok(v)
    }

    /// Tahoe's `_change_container_size`: grow the data area to `new_size`, moving
    /// the extra-lease block after it (and zeroing its old place).
    fn change_container_size(
        &mut self,
        new_size: u64,
        max: u64,
    ) -> io::Result<Result<(), ContainerTooLarge>> {
        if new_size > max {
            return Ok(Err(ContainerTooLarge {
                requested: new_size,
                max,
            }));
        }
        let old_offset = self.extra_lease_offset()?;
        let new_offset = MUT_DATA_OFFSET + new_size;
        if new_offset < old_offset {
            // Containers never shrink.
            return Ok(Ok(()));
        }
        let leases_size = 4 + self.num_extra_leases()? as u64 * MUT_LEASE_SIZE;
        let block = self.file.read(old_offset, leases_size)?;
        self.file.zero(old_offset, leases_size);
        self.file.write(new_offset, block);
        self.set_extra_lease_offset(new_offset);
        Ok(Ok(()))
    }

    /// Tahoe's `_write_share_data`: a write at or past the end extends the data
    /// (growing the container, zero-filling any gap) before the bytes land.
    fn write_data(
        &mut self,
        offset: u64,
        data: &Bytes,
        max: u64,
    ) -> io::Result<Result<(), ContainerTooLarge>> {
        let end = offset.checked_add(data.len() as u64);
        let Some(end) = end.filter(|e| e.checked_add(MUT_DATA_OFFSET).is_some()) else {
            return Ok(Err(ContainerTooLarge {
                requested: u64::MAX,
                max,
            }));
        };
        let data_length = self.data_length()?;
        if end >= data_length {
            if MUT_DATA_OFFSET + end > self.extra_lease_offset()? {
                if let Err(e) = self.change_container_size(end, max)? {
                    return Ok(Err(e));
                }
            }
            if offset > data_length {
                self.file
                    .zero(MUT_DATA_OFFSET + data_length, offset - data_length);
            }
            self.set_data_length(end);
        }
        self.file.write(MUT_DATA_OFFSET + offset, data.clone());
        Ok(Ok(()))
    }

    /// Tahoe's `writev`: the writes in order, then an optional truncation (a larger
    /// `new_length` is ignored).
    pub fn writev(
        &mut self,
        writes: &[(u64, Bytes)],
        new_length: Option<u64>,
        max: u64,
    ) -> io::Result<Result<(), ContainerTooLarge>> {
        for (offset, data) in writes {
            if let Err(e) = self.write_data(*offset, data, max)? {
                return Ok(Err(e));
            }
        }
        if let Some(n) = new_length {
            if n < self.data_length()? {
                self.set_data_length(n);
            }
        }
        Ok(Ok(()))
    }

    fn lease_record_offset(&mut self, i: u64, growing: bool) -> io::Result<u64> {
        if i < 4 {
            return Ok(MUT_HEADER_SIZE + i * MUT_LEASE_SIZE);
        }
        let extra = self.extra_lease_offset()?;
        let num_extra = self.num_extra_leases()? as u64;
        if i - 4 >= num_extra {
            if !growing {
                return Err(corrupt("lease index past the lease table"));
            }
            self.set_num_extra_leases((num_extra + 1) as u32)?;
        }
        Ok(extra + 4 + (i - 4) * MUT_LEASE_SIZE)
    }

    fn write_lease(&mut self, i: u64, lease: &StoredLease) -> io::Result<()> {
        let at = self.lease_record_offset(i, true)?;
        self.file
            .write(at, Bytes::copy_from_slice(&lease.to_mutable()));
        Ok(())
    }

    fn num_lease_slots(&self) -> io::Result<u64> {
        Ok(4 + self.num_extra_leases()? as u64)
    }

    /// `(slot, lease)` for every occupied slot, in slot order.
    pub fn leases(&mut self) -> io::Result<Vec<(u64, StoredLease)>> {
        let mut out = Vec::new();
        for i in 0..self.num_lease_slots()? {
            let at = self.lease_record_offset(i, false)?;
            let lease = StoredLease::from_mutable(&self.file.read_array::<92>(at)?);
            if lease.owner_num != 0 {
                out.push((i, lease));
            }
        }
        Ok(out)
    }

    /// Renew the first lease whose renew secret matches (only ever later), else put
    /// the lease in the first empty slot, else append one (which needs room).
    pub fn add_or_renew_lease(
        &mut self,
        available: u64,
        lease: &NewLease<'_>,
    ) -> io::Result<Result<(), NoSpaceForLease>> {
        let stored = lease.stored(self.schema);
        let leases = self.leases()?;
        for (i, old) in &leases {
            if old.is_renew_secret(self.schema, lease.renew_secret) {
                if stored.expiration > old.expiration {
                    let renewed = StoredLease {
                        expiration: stored.expiration,
                        ..old.clone()
                    };
                    self.write_lease(*i, &renewed)?;
                }
                return Ok(Ok(()));
            }
        }
        let slots = self.num_lease_slots()?;
        let empty = (0..slots).find(|i| !leases.iter().any(|(j, _)| j == i));
        match empty {
            Some(i) => self.write_lease(i, &stored)?,
            None => {
                if MUT_LEASE_SIZE > available {
                    return Ok(Err(NoSpaceForLease));
                }
                self.write_lease(slots, &stored)?;
            }
        }
        Ok(Ok(()))
    }
}

pub fn corrupt(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magics_match_tahoe() {
        assert_eq!(
            &*MAGIC_V1,
            b"Tahoe mutable container v1\n\x75\x09\x44\x03\x8e"
        );
        assert_eq!(&MAGIC_V2[..27], b"Tahoe mutable container v2\n");
        // The tail computed by allmydata.storage.mutable_schema._magic(2).
        assert_eq!(&MAGIC_V2[27..], &[0xc3, 0x55, 0x21, 0x99, 0x25]);
        assert_eq!(kind_of(&*MAGIC_V2), Kind::Mutable(Schema::V2));
        assert_eq!(kind_of(&*MAGIC_V1), Kind::Mutable(Schema::V1));
        assert_eq!(kind_of(&immutable_header(10)), Kind::Immutable(Schema::V2));
        assert_eq!(kind_of(b"\0\0\0\x01"), Kind::Immutable(Schema::V1));
        assert_eq!(kind_of(b"\0\0\0\x03whatever"), Kind::Unknown);
        assert_eq!(kind_of(b"\0\0"), Kind::Unknown);
    }

    /// nacl's `blake2b(b"abc", digest_size=32)`, as Tahoe hashes lease secrets.
    #[test]
    fn lease_secret_hash_is_blake2b_256() {
        assert_eq!(
            hex::encode(hash_secret(b"abc")),
            "bddd813c634239723171ef3fee98579b94964e3bb1cb3e427262c8c068d52319"
        );
    }

    #[test]
    fn immutable_header_saturates_legacy_length() {
        assert_eq!(immutable_header(5)[4..8], 5u32.to_be_bytes());
        assert_eq!(immutable_header(1 << 40)[4..8], u32::MAX.to_be_bytes());
    }

    #[test]
    fn new_mutable_container_layout() {
        let c = mutable_new_container(&[7; 20], b"short");
        assert_eq!(c.len(), 472);
        assert_eq!(&c[32..52], &[7; 20]);
        assert_eq!(&c[52..57], b"short");
        assert_eq!(&c[57..84], &[0; 27]);
        assert_eq!(be64(&c[84..92]), 0);
        assert_eq!(be64(&c[92..100]), 468);
    }

    fn lease(renew: &[u8], exp: u64) -> NewLease<'_> {
        NewLease {
            owner_num: 1,
            renew_secret: renew,
            cancel_secret: b"c",
            expiration: exp,
            nodeid: [9; 20],
        }
    }

    #[test]
    fn mutable_leases_fill_slots_then_extend_past_the_data() {
        let mut m = MutableShare::open(Overlay::empty(), Schema::V2);
        m.file.write(0, mutable_new_container(&[1; 20], b"we"));
        let writes = [(0u64, Bytes::from_static(b"hello"))];
        m.writev(&writes, None, MAX_MUTABLE_SHARE_SIZE)
            .unwrap()
            .unwrap();
        let secrets: Vec<Vec<u8>> = (0..6u8).map(|i| vec![i; 32]).collect();
        for s in &secrets {
            m.add_or_renew_lease(u64::MAX, &lease(s, 100))
                .unwrap()
                .unwrap();
        }
        let leases = m.leases().unwrap();
        assert_eq!(leases.len(), 6);
        assert_eq!(m.num_extra_leases().unwrap(), 2);
        assert_eq!(m.extra_lease_offset().unwrap(), 468 + 5);
        // Renewal only moves expiry forward, in place.
        m.add_or_renew_lease(0, &lease(&secrets[5], 50))
            .unwrap()
            .unwrap();
        m.add_or_renew_lease(0, &lease(&secrets[5], 500))
            .unwrap()
            .unwrap();
        let leases = m.leases().unwrap();
        assert_eq!(leases.len(), 6);
        assert_eq!(leases[5].1.expiration, 500);
        assert_eq!(leases[4].1.expiration, 100);
        // A new lease with no empty slot needs room.
        assert!(m
            .add_or_renew_lease(91, &lease(b"new", 1))
            .unwrap()
            .is_err());
        // Growing the data moves the extra leases behind it and zeroes their old
        // place.
        let writes = [(10u64, Bytes::from_static(b"world"))];
        m.writev(&writes, None, MAX_MUTABLE_SHARE_SIZE)
            .unwrap()
            .unwrap();
        assert_eq!(m.data_length().unwrap(), 15);
        assert_eq!(m.extra_lease_offset().unwrap(), 468 + 15);
        assert_eq!(m.read_data(0, 100).unwrap(), b"hello\0\0\0\0\0world");
        assert_eq!(m.leases().unwrap().len(), 6);
        // Truncation only lowers the recorded length; larger is ignored.
        m.writev(&[], Some(100), MAX_MUTABLE_SHARE_SIZE)
            .unwrap()
            .unwrap();
        assert_eq!(m.data_length().unwrap(), 15);
        m.writev(&[], Some(3), MAX_MUTABLE_SHARE_SIZE)
            .unwrap()
            .unwrap();
        assert_eq!(m.read_data(0, 100).unwrap(), b"hel");
        assert_eq!(m.read_data(2, 100).unwrap(), b"l");
        assert_eq!(m.read_data(3, 100).unwrap(), b"");
        assert_eq!(m.read_data(u64::MAX, u64::MAX).unwrap(), b"");
        // Past the maximum container size.
        let writes = [(20u64, Bytes::from_static(b"x"))];
        let err = m.writev(&writes, None, 20).unwrap().unwrap_err();
        assert_eq!(err.requested, 21);
        let writes = [(u64::MAX, Bytes::from_static(b"x"))];
        assert!(m.writev(&writes, None, u64::MAX).unwrap().is_err());
    }

    #[test]
    fn immutable_leases_append_after_data() {
        let mut f = Overlay::empty();
        f.write(0, immutable_header(4).to_vec());
        f.write(4, b"data".to_vec());
        f.write(16, immutable_first_lease(&lease(b"a", 10)).to_vec());
        f.write(8, 1u32.to_be_bytes().to_vec());
        let mut s = ImmutableShare::open(f, Schema::V2).unwrap();
        assert_eq!(s.lease_offset, 16);
        s.add_or_renew_lease(72, &lease(b"b", 20)).unwrap().unwrap();
        assert!(s.add_or_renew_lease(71, &lease(b"c", 20)).unwrap().is_err());
        s.add_or_renew_lease(0, &lease(b"a", 30)).unwrap().unwrap();
        let leases = s.leases().unwrap();
        assert_eq!(leases.len(), 2);
        assert_eq!(leases[0].expiration, 30);
        assert_eq!(leases[0].renew, hash_secret(b"a"));
        assert_eq!(leases[1].expiration, 20);
        assert_eq!(immutable_data_len(s.file.len(), 2), Some(4));
    }

    #[test]
    fn v1_leases_keep_cleartext_secrets() {
        let l = lease(b"renew", 5).stored(Schema::V1);
        assert_eq!(&l.renew[..5], b"renew");
        assert!(l.is_renew_secret(Schema::V1, &fixed32(b"renew")));
        assert!(!l.is_renew_secret(Schema::V1, b"renew"));
        let l2 = lease(b"renew", 5).stored(Schema::V2);
        assert!(l2.is_renew_secret(Schema::V2, b"renew"));
        assert!(!l2.is_renew_secret(Schema::V2, b"renew2"));
    }
}
