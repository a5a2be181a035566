module tracer.demos/go

go 1.19
