//! RemoteInterface schemas: the constraints foolscap checks on incoming calls, for
//! the interfaces Tahoe uses (transcribed from foolscap's and Tahoe's
//! `RemoteInterface` declarations; `int` means `IntegerConstraint(maxBytes=1024)`).

use super::broker::Value;

/// A constraint on one value.
#[derive(Debug)]
pub enum C {
    Any,
    /// A byte string of `min..=max` bytes.
    Bytes {
        min: usize,
        max: Option<usize>,
    },
    /// An integer whose magnitude fits in `max_bytes` bytes.
    Int {
        max_bytes: usize,
    },
    Bool,
    None,
    SetOf(&'static C, Option<usize>),
    ListOf(&'static C, Option<usize>),
    TupleOf(&'static [C]),
    DictOf(&'static C, &'static C, Option<usize>),
    ChoiceOf(&'static [C]),
    /// A reference to the peer's object, of the named interface (or any).
    Ref(Option<&'static str>),
}

#[derive(Debug)]
pub struct MethodSchema {
    pub name: &'static str,
    pub args: &'static [(&'static str, C)],
    pub result: C,
}

#[derive(Debug)]
pub struct RemoteInterface {
    /// The name sent in `my-reference`.
    pub name: &'static str,
    pub methods: &'static [MethodSchema],
}

impl RemoteInterface {
    pub fn method(&self, name: &str) -> Option<&'static MethodSchema> {
        // SAFETY of lifetimes: interfaces are statics.
        let methods: &'static [MethodSchema] = self.methods;
        methods.iter().find(|m| m.name == name)
    }
}

const INT: C = C::Int { max_bytes: 1024 };
const OFFSET: C = C::Int { max_bytes: 8 };
const BYTES: C = C::Bytes { min: 0, max: None };
const STORAGE_INDEX: C = C::Bytes {
    min: 0,
    max: Some(16),
};
const SECRET: C = C::Bytes {
    min: 32,
    max: Some(32),
};
const SHARENUMS: C = C::SetOf(&INT, Some(256));
const READV: C = C::ListOf(&C::TupleOf(&[OFFSET, INT]), None);
const READ_DATA: C = C::DictOf(&INT, &C::ListOf(&BYTES, None), None);
const TESTV: C = C::ListOf(&C::TupleOf(&[OFFSET, INT, BYTES, BYTES]), None);
const DATAV: C = C::ListOf(&C::TupleOf(&[OFFSET, BYTES]), None);
const TW_VECTORS: C = C::DictOf(
    &INT,
    &C::TupleOf(&[TESTV, DATAV, C::ChoiceOf(&[C::None, OFFSET])]),
    None,
);

pub static RI_BROKER: RemoteInterface = RemoteInterface {
    name: "RIBroker",
    methods: &[
        MethodSchema {
            name: "getReferenceByName",
            args: &[("name", BYTES)],
            result: C::Any,
        },
        MethodSchema {
            name: "decref",
            args: &[("clid", INT), ("count", INT)],
            result: C::None,
        },
        MethodSchema {
            name: "decgift",
            args: &[("giftID", INT), ("count", INT)],
            result: C::None,
        },
    ],
};

pub static RI_STORAGE_SERVER: RemoteInterface = RemoteInterface {
    name: "RIStorageServer.tahoe.allmydata.com",
    methods: &[
        MethodSchema {
            name: "get_version",
            args: &[],
            result: C::DictOf(&BYTES, &C::Any, None),
        },
        MethodSchema {
            name: "allocate_buckets",
            args: &[
                ("storage_index", STORAGE_INDEX),
                ("renew_secret", SECRET),
                ("cancel_secret", SECRET),
                ("sharenums", SHARENUMS),
                ("allocated_size", OFFSET),
                ("canary", C::Ref(None)),
            ],
            result: C::TupleOf(&[
                SHARENUMS,
                C::DictOf(&INT, &C::Ref(Some("RIBucketWriter")), Some(256)),
            ]),
        },
        MethodSchema {
            name: "add_lease",
            args: &[
                ("storage_index", STORAGE_INDEX),
                ("renew_secret", SECRET),
                ("cancel_secret", SECRET),
            ],
            result: C::Any,
        },
        MethodSchema {
            name: "get_buckets",
            args: &[("storage_index", STORAGE_INDEX)],
            result: C::DictOf(&INT, &C::Ref(Some("RIBucketReader")), Some(256)),
        },
        MethodSchema {
            name: "slot_readv",
            args: &[
                ("storage_index", STORAGE_INDEX),
                ("shares", C::ListOf(&INT, None)),
                ("readv", READV),
            ],
            result: READ_DATA,
        },
        MethodSchema {
            name: "slot_testv_and_readv_and_writev",
            args: &[
                ("storage_index", STORAGE_INDEX),
                ("secrets", C::TupleOf(&[SECRET, SECRET, SECRET])),
                ("tw_vectors", TW_VECTORS),
                ("r_vector", READV),
            ],
            result: C::TupleOf(&[C::Bool, READ_DATA]),
        },
        MethodSchema {
            name: "advise_corrupt_share",
            args: &[
                ("share_type", BYTES),
                ("storage_index", STORAGE_INDEX),
                ("shnum", INT),
                ("reason", BYTES),
            ],
            result: C::None,
        },
    ],
};

pub static RI_BUCKET_WRITER: RemoteInterface = RemoteInterface {
    name: "RIBucketWriter",
    methods: &[
        MethodSchema {
            name: "write",
            args: &[("offset", OFFSET), ("data", BYTES)],
            result: C::None,
        },
        MethodSchema {
            name: "close",
            args: &[],
            result: C::None,
        },
        MethodSchema {
            name: "abort",
            args: &[],
            result: C::None,
        },
    ],
};

pub static RI_BUCKET_READER: RemoteInterface = RemoteInterface {
    name: "RIBucketReader",
    methods: &[
        MethodSchema {
            name: "read",
            args: &[("offset", OFFSET), ("length", INT)],
            result: BYTES,
        },
        MethodSchema {
            name: "advise_corrupt_share",
            args: &[("reason", BYTES)],
            result: C::None,
        },
    ],
};

/// Interface name of the introducer's subscriber callback (checked on `subscribe_v2`).
pub const RI_SUBSCRIBER_NAME: &str = "RIIntroducerSubscriberClient_v2.tahoe.allmydata.com";

/// Tahoe's introducer service (`allmydata.introducer.interfaces`).
pub static RI_INTRODUCER: RemoteInterface = RemoteInterface {
    name: "RIIntroducerPublisherAndSubscriberService_v2.tahoe.allmydata.com",
    methods: &[
        MethodSchema {
            name: "get_version",
            args: &[],
            result: C::DictOf(&BYTES, &C::Any, None),
        },
        MethodSchema {
            name: "publish_v2",
            args: &[("announcement", C::Any), ("canary", C::Ref(None))],
            result: C::None,
        },
        MethodSchema {
            name: "subscribe_v2",
            args: &[
                ("subscriber", C::Ref(Some(RI_SUBSCRIBER_NAME))),
                ("service_name", BYTES),
                ("subscriber_info", C::DictOf(&BYTES, &C::Any, None)),
            ],
            result: C::None,
        },
    ],
};

/// The subscriber's side: the introducer calls `announce_v2` with a set of
/// `(msg, sig, key)` tuples.
pub static RI_INTRODUCER_SUBSCRIBER: RemoteInterface = RemoteInterface {
    name: RI_SUBSCRIBER_NAME,
    methods: &[MethodSchema {
        name: "announce_v2",
        args: &[("announcements", C::SetOf(&C::Any, None))],
        result: C::None,
    }],
};

/// Check a value against a constraint; the error says what was wrong.
pub fn check(c: &C, v: &Value, result_side: bool) -> Result<(), String> {
    match (c, v) {
        (C::Any, _) => Ok(()),
        (C::Bytes { min, max }, Value::Bytes(b)) => {
            if let Some(max) = max {
                if b.len() > *max {
                    return Err(format!("STRING token too large: {}>{max}", b.len()));
                }
            }
            if b.len() < *min {
                return Err(format!("string too short ({} < {min})", b.len()));
            }
            Ok(())
        }
        (C::Int { max_bytes }, Value::Int(i)) => {
            if i.magnitude().bits() > (*max_bytes as u64) * 8 {
                Err(format!("number too large (more than {max_bytes} bytes)"))
            } else {
                Ok(())
            }
        }
        (C::Bool, Value::Bool(_)) | (C::None, Value::None) => Ok(()),
        (C::SetOf(item, max), Value::Set(items) | Value::FrozenSet(items))
        | (C::ListOf(item, max), Value::List(items)) => {
            if let Some(max) = max {
                if items.len() > *max {
                    return Err(format!("too many items ({} > {max})", items.len()));
                }
            }
            items.iter().try_for_each(|x| check(item, x, result_side))
        }
        (C::TupleOf(cs), Value::Tuple(items)) => {
            if cs.len() != items.len() {
                return Err(format!(
                    "wrong size tuple ({} instead of {})",
                    items.len(),
                    cs.len()
                ));
            }
            cs.iter()
                .zip(items)
                .try_for_each(|(c, x)| check(c, x, result_side))
        }
        (C::DictOf(k, val, max), Value::Dict(items)) => {
            if let Some(max) = max {
                if items.len() > *max {
                    return Err(format!("Dict keys={} > maxKeys={max}", items.len()));
                }
            }
            items.iter().try_for_each(|(a, b)| {
                check(k, a, result_side).and_then(|_| check(val, b, result_side))
            })
        }
        (C::ChoiceOf(cs), _) => {
            if cs.iter().any(|c| check(c, v, result_side).is_ok()) {
                Ok(())
            } else {
                Err(format!("{} does not satisfy any choice", v.type_name()))
            }
        }
        (C::Ref(want), Value::Remote(r)) => match want {
            // Foolscap checks reference interfaces in arguments, not in results.
            Some(want) if !result_side && r.interface() != Some(*want) => Err(format!(
                "'<RemoteReference {:?}>' does not provide RemoteInterface {want}",
                r.interface()
            )),
            _ => Ok(()),
        },
        (C::Ref(_), Value::Local(_)) if result_side => Ok(()),
        (c, v) => Err(format!("{} is not {}", v.type_name(), describe(c))),
    }
}

fn describe(c: &C) -> &'static str {
    match c {
        C::Any => "anything",
        C::Bytes { .. } => "bytes",
        C::Int { .. } => "an int",
        C::Bool => "a bool",
        C::None => "None",
        C::SetOf(..) => "a set",
        C::ListOf(..) => "a list",
        C::TupleOf(_) => "a tuple",
        C::DictOf(..) => "a dict",
        C::ChoiceOf(_) => "any choice",
        C::Ref(_) => "a reference",
    }
}

/// Check an incoming call and put its arguments in declaration order.
pub fn check_call(
    iface: &'static RemoteInterface,
    method: &str,
    args: Vec<Value>,
    kwargs: Vec<(String, Value)>,
) -> Result<(Vec<Value>, &'static MethodSchema), String> {
    let m = iface
        .method(method)
        .ok_or_else(|| format!("method '{method}' not defined in {}", iface.name))?;
    if args.len() > m.args.len() {
        return Err(format!(
            "{}.{method}: too many positional arguments ({} > {})",
            iface.name,
            args.len(),
            m.args.len()
        ));
    }
    let mut slots: Vec<Option<Value>> = args.into_iter().map(Some).collect();
    slots.resize(m.args.len(), None);
    for (k, v) in kwargs {
        let i = m
            .args
            .iter()
            .position(|(n, _)| *n == k)
            .ok_or_else(|| format!("(\"unknown argument '{k}'\",)"))?;
        if slots[i].is_some() {
            return Err(format!("got multiple values for argument '{k}'"));
        }
        slots[i] = Some(v);
    }
    let mut out = Vec::with_capacity(slots.len());
    for ((name, c), slot) in m.args.iter().zip(slots) {
        let v = slot.ok_or_else(|| format!("(\"missing required argument '{name}'\",)"))?;
        check(c, &v, false).map_err(|why| format!("Violation ({name}=): ('{why}',)"))?;
        out.push(v);
    }
    Ok((out, m))
}

/// Check a result before sending it (foolscap's sender-side check).
pub fn check_result(m: &MethodSchema, v: &Value) -> Result<(), String> {
    check(&m.result, v, true).map_err(|why| format!("in return value of {}: {why}", m.name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_call_checks() {
        let si = Value::bytes(vec![1u8; 17]);
        let e = check_call(&RI_STORAGE_SERVER, "get_buckets", vec![si], vec![]).unwrap_err();
        assert!(e.contains("STRING token too large: 17>16"), "{e}");
        let e = check_call(&RI_STORAGE_SERVER, "renew_lease", vec![], vec![]).unwrap_err();
        assert!(e.contains("not defined"), "{e}");
        let e = check_call(
            &RI_STORAGE_SERVER,
            "get_buckets",
            vec![],
            vec![("bogus".into(), Value::None)],
        )
        .unwrap_err();
        assert!(e.contains("unknown argument 'bogus'"), "{e}");
        let e = check_call(&RI_STORAGE_SERVER, "get_buckets", vec![], vec![]).unwrap_err();
        assert!(
            e.contains("missing required argument 'storage_index'"),
            "{e}"
        );
        let (args, _) = check_call(
            &RI_STORAGE_SERVER,
            "get_buckets",
            vec![],
            vec![("storage_index".into(), Value::bytes(vec![1u8; 16]))],
        )
        .unwrap();
        assert_eq!(args.len(), 1);
        // A list where a set is required.
        let e = check(&SHARENUMS, &Value::List(vec![]), false).unwrap_err();
        assert!(e.contains("not a set"), "{e}");
        assert!(check(&OFFSET, &Value::int(1u128 << 64), false).is_err());
        assert!(check(&OFFSET, &Value::int(u64::MAX), false).is_ok());
    }
}
