//! The three roles.
