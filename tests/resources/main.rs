//! Resource files: `remediation.yaml` and `shipyard.yaml` as they are written, and the Keptn API
//! resource source that fetches them.

mod keptn_api_source;
mod remediation_files;
