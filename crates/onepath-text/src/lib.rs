//! Text around the decoder (being written).
