# Copies one of etcd's .proto files (Debian's golang-etcd-server-dev) to OUT without its gogoproto
# and google.api annotations, which only steer Go code generation and the HTTP gateway and whose
# own .proto files Debian does not ship for C++. Messages, fields and rpcs are left untouched.
#
#   cmake -DIN=/usr/share/gocode/src/go.etcd.io/etcd/.../x.proto -DOUT=build/.../x.proto \
#         -P strip_etcd_proto.cmake
if(NOT IN OR NOT OUT)
  message(FATAL_ERROR "strip_etcd_proto.cmake: pass -DIN=<proto> -DOUT=<proto>")
endif()
file(READ "${IN}" _text)
string(REGEX REPLACE "import \"gogoproto/gogo.proto\";" "" _text "${_text}")
string(REGEX REPLACE "import \"google/api/annotations.proto\";" "" _text "${_text}")
string(REGEX REPLACE "option \\(gogoproto\\.[a-z_]+\\) = [a-z]+;" "" _text "${_text}")
# rpc options: option (google.api.http) = { post: "..." body: "*" [additional_bindings { ... }] };
string(REGEX REPLACE "option \\(google\\.api\\.http\\) = {[^{}]*({[^{}]*}[^{}]*)*};" ""
       _text "${_text}")
# field options such as [(gogoproto.nullable) = false] (none in 3.4's lock path, kept for safety)
string(REGEX REPLACE " *\\[\\(gogoproto\\.[a-z_]+\\) = [a-z]+\\]" "" _text "${_text}")
if(_text MATCHES "gogoproto|google\\.api")
  message(FATAL_ERROR "strip_etcd_proto.cmake: ${IN} still mentions gogoproto or google.api")
endif()
file(WRITE "${OUT}.tmp" "${_text}")
file(RENAME "${OUT}.tmp" "${OUT}")
