//! Board support for the undertone box: board profiles, the GPIO button and the
//! status LED (built in the board issue; see docs/design).
