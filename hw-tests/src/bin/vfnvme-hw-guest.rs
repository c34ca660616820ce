//! Prepares the hw-tests guest (downloads the kernel, builds the initramfs) and prints how to
//! boot it by hand: `make guest`.

use std::process::ExitCode;

use vfnvme_hw_tests::guest::GuestImage;

fn main() -> ExitCode {
    match GuestImage::shared() {
        Ok(image) => {
            println!("kernel:    {}", image.vmlinuz.display());
            println!("initramfs: {}", image.base_initramfs.display());
            match &image.vfnvme {
                Ok(()) => println!("vfnvme:    included"),
                Err(reason) => println!("vfnvme:    NOT included: {reason}"),
            }
            println!(
                "The initramfs runs /harness/scenario.sh, which a test appends as a second cpio \
                 archive; without one the guest reports FAIL step=boot and powers off.\n\
                 It is deleted when the next harness process starts; copy it to keep it."
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("vfnvme-hw-guest: {error}");
            ExitCode::FAILURE
        }
    }
}
