package journal

import "fmt"

// FileError reports a problem with one journal file: the file (or the
// entry) it names was skipped and the Reader carries on with the others.
type FileError struct {
	Path   string
	Offset uint64 // byte offset of the object at fault; 0 if none
	Err    error
}

func (e *FileError) Error() string {
	if e.Offset != 0 {
		return fmt.Sprintf("journal file %s: offset %#x: %v", e.Path, e.Offset, e.Err)
	}
	return fmt.Sprintf("journal file %s: %v", e.Path, e.Err)
}

func (e *FileError) Unwrap() error { return e.Err }

func (f *file) errAt(off uint64, format string, args ...any) error {
	return &FileError{Path: f.path, Offset: off, Err: fmt.Errorf(format, args...)}
}
