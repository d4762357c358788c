// Command hello stands in for Pare in the image builder's tests: a static
// binary that says which arguments it got.
package main

import (
	"fmt"
	"os"
	"strings"
)

func main() { fmt.Println("hello", strings.Join(os.Args[1:], " ")) }
