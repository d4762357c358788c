package ociimage

import (
	"debug/elf"
	"fmt"
	"io"
)

// isDynamicELF reports whether an ELF executable asks for a dynamic loader
// (a PT_INTERP program header), which an image without a libc lacks.
func isDynamicELF(r io.ReaderAt) (bool, error) {
	f, err := elf.NewFile(r)
	if err != nil {
		return false, fmt.Errorf("not an ELF executable: %w", err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return true, nil
		}
	}
	return false, nil
}
