//! stub
pub fn tiles(c: u8) -> &'static [crate::cpu::dot::TileEntry] {
    super::scalar_tiles(c)
}
