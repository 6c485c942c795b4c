//! GBS request headers: Range, Content-Range, Authorization and
//! X-Tahoe-Authorization.
#![no_main]

use libfuzzer_sys::fuzz_target;
use swampgate::gbs::auth::{authorization_value, parse_secrets, SecretKind, SwissnumCheck};
use swampgate::gbs::range::{parse_content_range, parse_range, plan_read, ReadPlan};

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    match ctl % 3 {
        0 => {
            let Ok(s) = std::str::from_utf8(rest) else {
                return;
            };
            if let Some((b, e)) = parse_range(s) {
                assert!(b < e || e == u64::MAX, "empty range {b}..{e} from {s:?}");
            }
            for len in [0, 1, 1000, u64::MAX] {
                if let ReadPlan::Partial(r) = plan_read(Some(s), len) {
                    assert!(r.begin < r.end && r.end <= len, "{r:?} outside 0..{len}");
                }
            }
            if let Some(r) = parse_content_range(s) {
                assert!(r.begin < r.end, "{r:?}");
            }
        }
        1 => {
            // Only the exact value is let in.
            let swissnum = b"yci4erqgi6kgb3ybym4y3qlox2zawafr";
            let check = SwissnumCheck::new(swissnum);
            assert_eq!(
                check.check(Some(rest)).is_ok(),
                rest == authorization_value(swissnum).as_bytes()
            );
        }
        _ => {
            // Several X-Tahoe-Authorization values, separated by NUL.
            let values: Vec<&[u8]> = rest.split(|&b| b == 0).collect();
            let required = [SecretKind::LeaseRenew, SecretKind::LeaseCancel];
            if let Ok(s) = parse_secrets(&values, &required) {
                for k in required {
                    assert!(s.get(k).is_some(), "required {k:?} missing");
                }
            }
            let _ = parse_secrets(&values, &[]);
        }
    }
});
