//! The action role: the Unleash toggle-feature provider.
