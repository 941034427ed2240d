//! One string mapping per status enum, written once by a macro and tested both
//! ways over every variant.

/// A string that names no variant of the expected enum.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a valid {kind}: expected one of {expected}")]
pub struct UnknownVariant {
    pub kind: &'static str,
    pub value: String,
    pub expected: &'static str,
}

/// Declares a fieldless enum with its wire spelling (`as_str`, `FromStr`,
/// `Display`) and the list of all variants (`ALL`).
macro_rules! wire_enum {
    ($(#[$doc:meta])* $name:ident, $kind:literal { $($(#[$vdoc:meta])* $variant:ident => $wire:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($(#[$vdoc])* $variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $wire),+ }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::enums::UnknownVariant;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($wire => Ok($name::$variant),)+
                    _ => Err($crate::enums::UnknownVariant {
                        kind: $kind,
                        value: s.to_string(),
                        expected: concat!($($wire, " "),+),
                    }),
                }
            }
        }
    };
}

pub(crate) use wire_enum;

#[cfg(test)]
pub(crate) fn assert_round_trip<T>(all: &[T])
where
    T: Copy + PartialEq + std::fmt::Debug + std::fmt::Display + std::str::FromStr,
    <T as std::str::FromStr>::Err: std::fmt::Debug,
{
    let mut seen = std::collections::HashSet::new();
    for v in all {
        let s = v.to_string();
        assert!(seen.insert(s.clone()), "duplicate wire name {s}");
        assert_eq!(s.parse::<T>().expect("parses"), *v);
    }
    assert!("definitely-not-a-variant".parse::<T>().is_err());
}
