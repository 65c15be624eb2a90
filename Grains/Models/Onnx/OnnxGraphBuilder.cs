using System.Buffers.Binary;
using Google.Protobuf;
using Onnx;

namespace StreamInfer.Grains.Models.Onnx;

/// <summary>
/// Builds an ONNX model as a graph in code, on the ONNX protobuf types: the project's own models (the tests' models,
/// the benchmark's, the built-in decoder) are generated this way rather than shipped as opaque files.
/// </summary>
public sealed class OnnxGraphBuilder
{
    private readonly GraphProto _graph;
    private readonly long _opset;
    private int _next;

    /// <summary>A builder for a graph called <paramref name="name"/> on the default ONNX opset <paramref name="opset"/>.</summary>
    public OnnxGraphBuilder(string name, long opset = 17)
    {
        _graph = new GraphProto { Name = name };
        _opset = opset;
    }

    /// <summary>Declares a graph input. Each dimension is a size (<see cref="long"/>) or a symbolic name (<see cref="string"/>).</summary>
    public string Input(string name, TensorElementType type, params object[] dims)
    {
        _graph.Input.Add(ValueInfo(name, type, dims));
        return name;
    }

    /// <summary>Declares a graph output, produced by some node's output of the same name.</summary>
    public string Output(string name, TensorElementType type, params object[] dims)
    {
        _graph.Output.Add(ValueInfo(name, type, dims));
        return name;
    }

    /// <summary>Adds a constant float tensor.</summary>
    public string Constant(string name, float[] values, params long[] dims)
    {
        var t = new TensorProto { Name = name, DataType = (int)TensorProto.Types.DataType.Float };
        t.Dims.AddRange(dims);
        t.FloatData.AddRange(values);
        _graph.Initializer.Add(t);
        return name;
    }

    /// <summary>Adds a constant int64 tensor.</summary>
    public string Constant(string name, long[] values, params long[] dims)
    {
        var t = new TensorProto { Name = name, DataType = (int)TensorProto.Types.DataType.Int64 };
        t.Dims.AddRange(dims);
        t.Int64Data.AddRange(values);
        _graph.Initializer.Add(t);
        return name;
    }

    /// <summary>
    /// Adds a constant float tensor stored as little-endian <c>raw_data</c>, as exporters write weights: for millions
    /// of values it serializes and loads far faster than the repeated <c>float_data</c> field, and its bytes do not
    /// depend on the host's endianness.
    /// </summary>
    public string RawConstant(string name, ReadOnlySpan<float> values, params long[] dims)
    {
        var bytes = new byte[values.Length * sizeof(float)];
        for (var i = 0; i < values.Length; i++)
        {
            BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(i * sizeof(float)), values[i]);
        }

        var t = new TensorProto { Name = name, DataType = (int)TensorProto.Types.DataType.Float, RawData = ByteString.CopyFrom(bytes) };
        t.Dims.AddRange(dims);
        _graph.Initializer.Add(t);
        return name;
    }

    /// <summary>
    /// Adds a node with one output and returns the output's name (<paramref name="output"/>, or a fresh one).
    /// Attributes are <c>(name, value)</c> with value a <see cref="long"/>, <see cref="float"/>, <see cref="long"/>[]
    /// or <see cref="string"/>.
    /// </summary>
    public string Node(string op, string[] inputs, string? output = null, params (string Name, object Value)[] attributes)
    {
        output ??= $"{op.ToLowerInvariant()}_{_next++}";
        var node = new NodeProto { OpType = op, Name = $"{op}_{_graph.Node.Count}" };
        node.Input.AddRange(inputs);
        node.Output.Add(output);
        foreach (var (attrName, value) in attributes)
        {
            node.Attribute.Add(Attribute(attrName, value));
        }

        _graph.Node.Add(node);
        return output;
    }

    /// <summary>
    /// Adds a node with several outputs (e.g. <c>Split</c>) and returns their names, <paramref name="outputs"/>.
    /// Attributes are as for <see cref="Node"/>.
    /// </summary>
    public string[] MultiOutputNode(string op, string[] inputs, string[] outputs, params (string Name, object Value)[] attributes)
    {
        var node = new NodeProto { OpType = op, Name = $"{op}_{_graph.Node.Count}" };
        node.Input.AddRange(inputs);
        node.Output.AddRange(outputs);
        foreach (var (attrName, value) in attributes)
        {
            node.Attribute.Add(Attribute(attrName, value));
        }

        _graph.Node.Add(node);
        return outputs;
    }

    /// <summary>A fresh output name with <paramref name="prefix"/>, for <see cref="MultiOutputNode"/>.</summary>
    public string FreshName(string prefix) => $"{prefix}_{_next++}";

    /// <summary>The finished model.</summary>
    public ModelProto Build()
    {
        var model = new ModelProto
        {
            // The IR version that goes with the opset (ONNX's versioning table), so checkers accept newer opsets too.
            IrVersion = _opset switch { >= 23 => 11, >= 21 => 10, >= 19 => 9, _ => 8 },
            ProducerName = "StreamInfer",
            Graph = _graph,
        };
        model.OpsetImport.Add(new OperatorSetIdProto { Domain = string.Empty, Version = _opset });
        return model;
    }

    /// <summary>Writes the model to <paramref name="path"/>, creating its folder.</summary>
    public void Save(string path)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        File.WriteAllBytes(path, Build().ToByteArray());
    }

    /// <summary>The ONNX <c>TensorProto.DataType</c> of an element type.</summary>
    public static int OnnxDataType(TensorElementType type) => (int)(type switch
    {
        TensorElementType.Float32 => TensorProto.Types.DataType.Float,
        TensorElementType.Float16 => TensorProto.Types.DataType.Float16,
        TensorElementType.Float64 => TensorProto.Types.DataType.Double,
        TensorElementType.Int64 => TensorProto.Types.DataType.Int64,
        TensorElementType.Int32 => TensorProto.Types.DataType.Int32,
        TensorElementType.Int16 => TensorProto.Types.DataType.Int16,
        TensorElementType.Int8 => TensorProto.Types.DataType.Int8,
        TensorElementType.UInt8 => TensorProto.Types.DataType.Uint8,
        TensorElementType.Bool => TensorProto.Types.DataType.Bool,
        TensorElementType.String => TensorProto.Types.DataType.String,
        _ => throw new ArgumentOutOfRangeException(nameof(type)),
    });

    private static ValueInfoProto ValueInfo(string name, TensorElementType type, object[] dims)
    {
        var shape = new TensorShapeProto();
        foreach (var d in dims)
        {
            shape.Dim.Add(d switch
            {
                string symbol => new TensorShapeProto.Types.Dimension { DimParam = symbol },
                long size => new TensorShapeProto.Types.Dimension { DimValue = size },
                int size => new TensorShapeProto.Types.Dimension { DimValue = size },
                _ => throw new ArgumentException($"dimension {d} of '{name}' is neither a size nor a symbol.", nameof(dims)),
            });
        }

        return new ValueInfoProto
        {
            Name = name,
            Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = OnnxDataType(type), Shape = shape } },
        };
    }

    private static AttributeProto Attribute(string name, object value) => value switch
    {
        long i => new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Int, I = i },
        int i => new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Int, I = i },
        float f => new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Float, F = f },
        long[] ints => Ints(name, ints),
        string s => new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.String, S = ByteString.CopyFromUtf8(s) },
        _ => throw new ArgumentException($"attribute '{name}' has an unsupported type {value.GetType().Name}.", nameof(value)),
    };

    private static AttributeProto Ints(string name, long[] values)
    {
        var a = new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Ints };
        a.Ints.AddRange(values);
        return a;
    }
}
