//! Examples package; the programs are under `[[example]]`.
