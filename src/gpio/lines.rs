//! Finding the header's pins among the board's GPIO chips, free of I/O: the chips are
//! read by `cdev` and handed in, so every rule is unit-tested without a gpiochip.
//!
//! Pin numbers are the header's BCM numbers. The same pin is line `N` of a different
//! chip on each board and kernel (the Pi 5's header moved between gpiochip0 and
//! gpiochip4 across kernels), so chips are never picked by number. In order:
//! 1. `gpio.chip` when set (the operator's word: a path, a name such as `gpiochip4`, or
//!    a label), line `N` of it;
//! 2. a line named `GPIO<N>`, as the Raspberry Pi device trees name the header's lines
//!    (a Raspberry Pi header chip preferred if two chips have one);
//! 3. line `N` of the chip whose label is a Raspberry Pi header controller.

use std::path::PathBuf;

/// Labels of the chips that carry the 40-pin header, line N = BCM GPIO N: Pi 1-3 and
/// Zero (BCM2835/6/7), Pi 4 (BCM2711), Pi 5 (RP1).
pub const HEADER_LABELS: &[&str] = &["pinctrl-bcm2835", "pinctrl-bcm2711", "pinctrl-rp1"];

/// One GPIO chip as the kernel describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChipInfo {
    pub path: PathBuf,
    /// `gpiochipN`.
    pub name: String,
    /// What drives it, e.g. `pinctrl-bcm2711` or `9030000.pl061`.
    pub label: String,
    /// Line names by offset; empty where the device tree names none.
    pub lines: Vec<String>,
}

/// Where a pin was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineAddr {
    pub chip: PathBuf,
    pub chip_label: String,
    pub offset: u32,
    pub found_by: FoundBy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FoundBy {
    ConfiguredChip,
    LineName,
    ChipLabel,
}

/// Why a pin could not be placed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    #[error("there are no GPIO chips (/dev/gpiochip*)")]
    NoChips,
    #[error("gpio.chip {wanted:?} is none of the chips here ({present})")]
    NoSuchChip { wanted: String, present: String },
    #[error("pin {pin} is beyond the {lines} lines of {chip}")]
    BeyondChip {
        pin: u32,
        chip: String,
        lines: usize,
    },
    #[error(
        "pin {pin}: no line is named GPIO{pin} and no chip is a Raspberry Pi header \
         controller ({}) among {present}; set gpio.chip",
        HEADER_LABELS.join(", ")
    )]
    NotFound { pin: u32, present: String },
}

fn present(chips: &[ChipInfo]) -> String {
    chips
        .iter()
        .map(|c| format!("{} [{}]", c.name, c.label))
        .collect::<Vec<_>>()
        .join(", ")
}

fn is_header(chip: &ChipInfo) -> bool {
    HEADER_LABELS.contains(&chip.label.as_str())
}

/// Places header pin `pin` on a chip line.
pub fn find_line(
    chips: &[ChipInfo],
    pin: u32,
    configured: Option<&str>,
) -> Result<LineAddr, LookupError> {
    if chips.is_empty() {
        return Err(LookupError::NoChips);
    }
    let addr = |c: &ChipInfo, offset: u32, found_by| LineAddr {
        chip: c.path.clone(),
        chip_label: c.label.clone(),
        offset,
        found_by,
    };
    if let Some(wanted) = configured {
        let chip = chips
            .iter()
            .find(|c| c.path.as_os_str() == wanted || c.name == wanted)
            .or_else(|| chips.iter().find(|c| c.label == wanted))
            .ok_or_else(|| LookupError::NoSuchChip {
                wanted: wanted.to_string(),
                present: present(chips),
            })?;
        if pin as usize >= chip.lines.len() {
            return Err(LookupError::BeyondChip {
                pin,
                chip: chip.name.clone(),
                lines: chip.lines.len(),
            });
        }
        return Ok(addr(chip, pin, FoundBy::ConfiguredChip));
    }
    let name = format!("GPIO{pin}");
    let named = |c: &ChipInfo| c.lines.iter().position(|l| *l == name);
    let by_name = chips
        .iter()
        .filter(|c| is_header(c))
        .chain(chips.iter().filter(|c| !is_header(c)))
        .find_map(|c| named(c).map(|off| (c, off)));
    if let Some((chip, offset)) = by_name {
        return Ok(addr(chip, offset as u32, FoundBy::LineName));
    }
    match chips
        .iter()
        .find(|c| is_header(c) && (pin as usize) < c.lines.len())
    {
        Some(chip) => Ok(addr(chip, pin, FoundBy::ChipLabel)),
        None => Err(LookupError::NotFound {
            pin,
            present: present(chips),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chip(n: u32, label: &str, lines: &[&str]) -> ChipInfo {
        ChipInfo {
            path: PathBuf::from(format!("/dev/gpiochip{n}")),
            name: format!("gpiochip{n}"),
            label: label.into(),
            lines: lines.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn unnamed(n: u32, label: &str, count: usize) -> ChipInfo {
        chip(n, label, &vec![""; count])
    }

    /// A Raspberry Pi 4 on Raspberry Pi OS: the header chip names its lines.
    fn pi4_named() -> Vec<ChipInfo> {
        let mut names: Vec<String> = (0..58).map(|i| format!("GPIO{i}")).collect();
        names[2] = "SDA1".into();
        let names: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
        vec![
            chip(0, "pinctrl-bcm2711", &names),
            unnamed(1, "raspberrypi-exp-gpio", 8),
        ]
    }

    #[test]
    fn a_named_line_is_found_by_its_name() {
        let a = find_line(&pi4_named(), 17, None).unwrap();
        assert_eq!(a.chip, PathBuf::from("/dev/gpiochip0"));
        assert_eq!((a.offset, a.found_by), (17, FoundBy::LineName));
    }

    #[test]
    fn a_pin_named_for_its_function_falls_back_to_the_header_chip() {
        // GPIO2 is named SDA1 on the Pi's device tree; the header chip still holds it.
        let a = find_line(&pi4_named(), 2, None).unwrap();
        assert_eq!((a.offset, a.found_by), (2, FoundBy::ChipLabel));
    }

    #[test]
    fn the_pi5_header_is_found_wherever_the_kernel_numbered_it() {
        // Older Pi 5 kernels: RP1 is gpiochip4; newer ones: gpiochip0. No line names.
        for rp1 in [4, 0] {
            let other = if rp1 == 0 { 4 } else { 0 };
            let chips = vec![
                unnamed(other, "gpio-brcmstb@107d508500", 32),
                unnamed(rp1, "pinctrl-rp1", 54),
            ];
            let a = find_line(&chips, 27, None).unwrap();
            assert_eq!(a.chip, PathBuf::from(format!("/dev/gpiochip{rp1}")));
            assert_eq!((a.offset, a.found_by), (27, FoundBy::ChipLabel));
            assert_eq!(a.chip_label, "pinctrl-rp1");
        }
    }

    #[test]
    fn a_header_chip_wins_a_name_clash() {
        let expander = chip(0, "pca9555", &["GPIO17", "x"]);
        let mut names: Vec<String> = (0..54).map(|i| format!("GPIO{i}")).collect();
        names[0] = "ID_SDA".into();
        let names: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
        let chips = vec![expander, chip(4, "pinctrl-rp1", &names)];
        let a = find_line(&chips, 17, None).unwrap();
        assert_eq!(a.chip, PathBuf::from("/dev/gpiochip4"));
        assert_eq!(a.offset, 17);
    }

    #[test]
    fn the_configured_chip_wins_by_path_name_or_label() {
        let chips = vec![
            unnamed(0, "pinctrl-bcm2711", 58),
            unnamed(3, "9030000.pl061", 8),
        ];
        for wanted in ["/dev/gpiochip3", "gpiochip3", "9030000.pl061"] {
            let a = find_line(&chips, 3, Some(wanted)).unwrap();
            assert_eq!(a.chip, PathBuf::from("/dev/gpiochip3"), "{wanted}");
            assert_eq!((a.offset, a.found_by), (3, FoundBy::ConfiguredChip));
        }
        assert_eq!(
            find_line(&chips, 9, Some("gpiochip3")),
            Err(LookupError::BeyondChip {
                pin: 9,
                chip: "gpiochip3".into(),
                lines: 8
            })
        );
        let e = find_line(&chips, 3, Some("gpiochip9")).unwrap_err();
        assert!(e.to_string().contains("gpiochip0 [pinctrl-bcm2711]"), "{e}");
    }

    #[test]
    fn a_board_without_a_known_header_says_what_it_has() {
        let chips = vec![unnamed(0, "9030000.pl061", 8)];
        let e = find_line(&chips, 17, None).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("gpiochip0 [9030000.pl061]"), "{text}");
        assert!(text.contains("set gpio.chip"), "{text}");
        assert_eq!(find_line(&[], 17, None), Err(LookupError::NoChips));
    }
}
