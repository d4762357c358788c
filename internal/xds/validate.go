package xds

import (
	"errors"
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
	if v, ok := m.(allValidator); ok {
		if err := v.ValidateAll(); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	} else {
		return fmt.Errorf("%s: %s has no validator", path, m.ProtoReflect().Descriptor().FullName())
	}
	return walkAnys(m.ProtoReflect(), path)
}

// walkAnys finds every Any directly or indirectly inside msg (not inside
// another Any: validateDeep recurses into those) and validates its content.
func walkAnys(msg protoreflect.Message, path string) error {
	var err error
	msg.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		p := path + "." + string(fd.Name())
		switch {
		case fd.IsList() && fd.Message() != nil:
			l := v.List()
			for i := 0; i < l.Len() && err == nil; i++ {
				err = visit(l.Get(i).Message(), fmt.Sprintf("%s[%d]", p, i))
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				err = visit(mv.Message(), fmt.Sprintf("%s[%q]", p, k.String()))
				return err == nil
			})
		case fd.Message() != nil && !fd.IsList() && !fd.IsMap():
			err = visit(v.Message(), p)
		}
		return err == nil
	})
	return err
}

func visit(m protoreflect.Message, path string) error {
	a, ok := m.Interface().(*anypb.Any)
	if !ok {
		return walkAnys(m, path)
	}
	if a.GetTypeUrl() == "" {
		return fmt.Errorf("%s: Any without a type", path)
	}
	inner, err := a.UnmarshalNew()
	if err != nil {
		return fmt.Errorf("%s: unpack %s: %w", path, a.GetTypeUrl(), err)
	}
	if inner == nil {
		return errors.New(path + ": empty Any")
	}
	return validateDeep(inner, fmt.Sprintf("%s(%s)", path, inner.ProtoReflect().Descriptor().Name()))
}
