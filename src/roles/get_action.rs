//! The get-action role (Keptn 0.8.3 – 1.x).
