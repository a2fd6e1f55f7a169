//! `closed_set!`: a fieldless enum whose every value has one name (its `Display`, its `FromStr` and its
//! serde spelling) and one line saying what it is. Shared by the harness and the fault proxy, which
//! runs in the lab's containers and speaks the same fault names.

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
#[macro_export]
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
            type Err = $crate::Unknown;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::ALL.iter().copied().find(|v| v.name() == s).ok_or_else(|| {
                    $crate::Unknown::new($what, s, Self::ALL.iter().map(|v| v.name()))
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

/// A name that is not in its closed set; the message lists the names that are.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {got:?}; {what}s: {known}")]
pub struct Unknown {
    pub what: &'static str,
    pub got: String,
    pub known: String,
}

impl Unknown {
    pub fn new<'a>(what: &'static str, got: &str, known: impl IntoIterator<Item = &'a str>) -> Self {
        Self {
            what,
            got: got.to_owned(),
            known: known.into_iter().collect::<Vec<_>>().join(", "),
        }
    }
}

#[cfg(test)]
mod tests {
    closed_set! {
        /// A set to try the macro on.
        pub enum Colour, "colour" {
            Red = "red": "the first",
            Dark = "dark_blue": "the second",
        }
    }

    #[test]
    fn each_value_has_one_name_both_ways_and_an_unknown_one_lists_them() {
        assert_eq!(Colour::Dark.to_string(), "dark_blue");
        assert_eq!("red".parse::<Colour>(), Ok(Colour::Red));
        let unknown = "green".parse::<Colour>().unwrap_err();
        assert_eq!(
            unknown.to_string(),
            r#"unknown colour "green"; colours: red, dark_blue"#
        );
        assert_eq!(Colour::COUNT, 2);
        assert_eq!(Colour::names(), "red, dark_blue");
        assert_eq!(Colour::Red.describe(), "the first");
    }
}
