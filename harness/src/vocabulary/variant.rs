//! Which code an experiment runs: the naive one or the fix.

closed_set::closed_set! {
    /// One side of an experiment. Both run under the same load and the same faults; a run with both
    /// runs the vulnerable one first.
    pub enum Variant, "variant" {
        Vulnerable = "vulnerable": "the naive code people really write",
        Defended = "defended": "the same service with the defence switched on",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_parse_by_name_and_unknown_ones_list_the_known() {
        assert_eq!("defended".parse::<Variant>().unwrap(), Variant::Defended);
        let error = "hardened".parse::<Variant>().unwrap_err().to_string();
        assert_eq!(
            error,
            "unknown variant \"hardened\"; variants: vulnerable, defended"
        );
        assert_eq!(
            serde_json::to_string(&Variant::Vulnerable).unwrap(),
            "\"vulnerable\""
        );
        assert!(serde_json::from_str::<Variant>("\"both\"").is_err());
        assert!(Variant::Vulnerable < Variant::Defended, "vulnerable runs first");
    }
}
