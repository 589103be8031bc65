//! Events in and out, in-process: decoding malformed and tolerated input, properties of the
//! codec, the JSON Schemas, real payloads from the Keptn ecosystem and monitoring webhooks
//! translated into problems.

mod malformed;
mod props;
mod schemas;
mod vectors;
mod webhooks;
