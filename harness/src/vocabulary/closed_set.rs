//! `closed_set!`: a fieldless enum whose every value has one name (its `Display`, its `FromStr` and its
//! serde spelling) and one line saying what it is.

/// Declares a closed set:
///
/// ```text
/// closed_set! {
///     /// Docs of the enum.
///     pub enum Variant, "variant" {
///         Vulnerable = "vulnerable": "the naive code people really write",
///     }
/// }
/// ```
///
/// gives `Variant::ALL`, `name()`, `describe()`, `Display`, `FromStr` (an unknown name lists the
/// known ones), and `Serialize`/`Deserialize` as the name.
macro_rules! closed_set {
    (
        $(#[$meta:meta])*
        pub enum $name:ident, $what:literal {
            $($variant:ident = $text:literal: $describe:literal,)+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name {
            $(#[doc = $describe] $variant,)+
        }

        impl $name {
            /// Every value, in the order they are declared.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];
            /// How many values there are.
            pub const COUNT: usize = Self::ALL.len();

            pub fn name(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            /// One line saying what the value is.
            pub fn describe(self) -> &'static str {
                match self {
                    $($name::$variant => $describe,)+
                }
            }

            /// Every name, comma-separated, for messages that say what is allowed.
            pub fn names() -> String {
                Self::ALL.iter().map(|v| v.name()).collect::<Vec<_>>().join(", ")
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::vocabulary::Unknown;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::ALL.iter().copied().find(|v| v.name() == s).ok_or_else(|| {
                    $crate::vocabulary::Unknown::new($what, s, Self::ALL.iter().map(|v| v.name()))
                })
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.name())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

pub(crate) use closed_set;
