//! photondb-gateway: the public edge and the photonctl tool.
