//! The remediator role.
