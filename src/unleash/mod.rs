//! The Unleash admin client and the toggle action.
