package xds

import (
	"fmt"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
)

// Validate runs the protoc-gen-validate rules Envoy applies on load
// (ValidateAll) over m and over every message packed inside an Any below
// it, at any depth. The generated validators check an Any's type URL at
// most, never its content: an invalid HCM inside a listener, or ext_proc
// config inside the HCM, passes the listener's ValidateAll and is only
// NACKed by Envoy. An Any whose type is not linked into this binary is an
// error too: it could not be checked.
func Validate(m proto.Message) error {
	return validateDeep(m, resourceName(m))
}

type allValidator interface{ ValidateAll() error }

func validateDeep(m proto.Message, path string) error {
	v, ok := m.(allValidator)
	if !ok {
		return fmt.Errorf("%s: %s has no validator", path, m.ProtoReflect().Descriptor().FullName())
	}
	if err := v.ValidateAll(); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return forEachAny(m.ProtoReflect(), path, func(a *anypb.Any, path string) error {
		if a.GetTypeUrl() == "" {
			return fmt.Errorf("%s: Any without a type", path)
		}
		inner, err := a.UnmarshalNew()
		if err != nil {
			return fmt.Errorf("%s: unpack %s: %w", path, a.GetTypeUrl(), err)
		}
		return validateDeep(inner, fmt.Sprintf("%s(%s)", path, inner.ProtoReflect().Descriptor().Name()))
	})
}

// forEachAny calls fn for every Any inside msg — in fields, lists and map
// values, at any depth — but not for those inside an Any: fn decides
// whether to unpack and descend. path names the field for errors.
func forEachAny(msg protoreflect.Message, path string, fn func(a *anypb.Any, path string) error) error {
	visit := func(m protoreflect.Message, path string) error {
		if a, ok := m.Interface().(*anypb.Any); ok {
			return fn(a, path)
		}
		return forEachAny(m, path, fn)
	}
	var err error
	msg.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		p := path + "." + string(fd.Name())
		switch {
		case fd.IsList():
			if fd.Message() == nil {
				return true
			}
			l := v.List()
			for i := 0; i < l.Len() && err == nil; i++ {
				err = visit(l.Get(i).Message(), fmt.Sprintf("%s[%d]", p, i))
			}
		case fd.IsMap():
			if fd.MapValue().Message() == nil {
				return true
			}
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				err = visit(mv.Message(), fmt.Sprintf("%s[%q]", p, k.String()))
				return err == nil
			})
		case fd.Message() != nil:
			err = visit(v.Message(), p)
		}
		return err == nil
	})
	return err
}
