//! What the virtual users do; an experiment's `load.mix` weighs them.

closed_set::closed_set! {
    /// A scenario of the load generator.
    pub enum Scenario, "scenario" {
        Browse = "browse": "the product list and product pages",
        Availability = "availability": "stock levels of products",
        Checkout = "checkout": "log in, then buy",
        History = "history": "log in, then read the order history",
        LoginProbe = "login_probe": "wrong-password logins, alternately for a seeded email and an unknown one (the timing attacker)",
    }
}

impl Scenario {
    /// Whether its users log in first and keep the session.
    pub fn logs_in(self) -> bool {
        matches!(self, Self::Checkout | Self::History)
    }
}
