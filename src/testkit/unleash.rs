//! A real Unleash server (npm) on a private PostgreSQL cluster.
