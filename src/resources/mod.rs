//! `remediation.yaml`, `shipyard.yaml` and where they come from.
