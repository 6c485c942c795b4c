//! Tahoe's and Foolscap's base32: lowercase, unpadded RFC 4648. Tubids, swissnums,
//! storage indexes, node keys and announcement signatures are all written this way.

/// Lowercase, unpadded RFC 4648 base32, as Tahoe and Foolscap write it.
pub fn base32_lower(b: &[u8]) -> String {
    data_encoding::BASE32_NOPAD.encode(b).to_ascii_lowercase()
}

/// The `N` bytes that [`base32_lower`] writes as `s`. Any other spelling (uppercase,
/// padding, wrong length, trailing bits set) is refused, so one value has one name.
pub fn base32_lower_decode<const N: usize>(s: &str) -> Option<[u8; N]> {
    if !s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b))
    {
        return None;
    }
    let v = data_encoding::BASE32_NOPAD
        .decode(s.to_ascii_uppercase().as_bytes())
        .ok()?;
    let arr: [u8; N] = v.try_into().ok()?;
    (base32_lower(&arr) == s).then_some(arr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base32_decoding_is_strict() {
        let tubid = [0x11u8; 20];
        let s = base32_lower(&tubid);
        assert_eq!(s.len(), 32);
        assert_eq!(base32_lower_decode::<20>(&s), Some(tubid));
        assert_eq!(base32_lower_decode::<16>(&s), None);
        assert_eq!(base32_lower_decode::<20>(&s.to_ascii_uppercase()), None);
        assert_eq!(base32_lower_decode::<20>(&format!("{s}=")), None);
        assert_eq!(base32_lower_decode::<20>(&s[..31]), None);
    }
}
