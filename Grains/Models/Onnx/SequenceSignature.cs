using System.Buffers.Binary;
using System.Collections.Immutable;
using StreamInfer.Grains.Models.Repository;

namespace StreamInfer.Grains.Models.Onnx;

/// <summary>
/// One state pair of a stateful model, by its input's and output's places in the signature: one sequence's state is
/// <see cref="RowElements"/> elements (the input's shape without its batch axis, row-major), all
/// <see cref="Initial"/> at the start.
/// </summary>
internal sealed record StatePair(int Input, int Output, TensorElementType Type, long RowElements, byte[] Initial)
{
    /// <summary>The bytes of one sequence's state.</summary>
    public long RowBytes => RowElements * Type.ElementSize();
}

/// <summary>
/// What the grid feeds a stateful model itself: its state pairs and its optional start and end flags. Clients never send
/// these inputs, and never see the state outputs.
/// </summary>
internal sealed record SequenceSignature(ImmutableArray<StatePair> States, int? StartInput, int? EndInput)
{
    /// <summary>Whether the grid fills input <paramref name="index"/> (a state or a flag).</summary>
    public bool Feeds(int index) => index == StartInput || index == EndInput || StateIndex(index) >= 0;

    /// <summary>Whether output <paramref name="output"/> is a state, kept from the clients.</summary>
    public bool IsState(int output)
    {
        foreach (var pair in States)
        {
            if (pair.Output == output)
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>The place in <see cref="States"/> of the pair fed into input <paramref name="index"/>, or -1.</summary>
    public int StateIndex(int index)
    {
        for (var p = 0; p < States.Length; p++)
        {
            if (States[p].Input == index)
            {
                return p;
            }
        }

        return -1;
    }

    /// <summary>Checks the <c>sequence</c> section against the model's inputs and outputs; problems go to <paramref name="error"/>.</summary>
    public static SequenceSignature? Build(SequenceConfig config, List<TensorSlot> inputs, List<TensorSlot> outputs, Action<string?, string> error)
    {
        var states = ImmutableArray.CreateBuilder<StatePair>();
        var fed = new HashSet<int>();
        var pairs = config.State ?? [];
        for (var i = 0; i < pairs.Count; i++)
        {
            var at = $"sequence.state[{i}]";
            var input = inputs.FindIndex(s => s.Name == pairs[i].Input);
            var output = outputs.FindIndex(s => s.Name == pairs[i].Output);
            if (input < 0)
            {
                error($"{at}.input", $"the model has no input '{pairs[i].Input}' (it has {string.Join(", ", inputs.Select(s => s.Name))}).");
            }

            if (output < 0)
            {
                error($"{at}.output", $"the model has no output '{pairs[i].Output}' (it has {string.Join(", ", outputs.Select(s => s.Name))}).");
            }

            if (input < 0 || output < 0)
            {
                continue;
            }

            var (slot, next) = (inputs[input], outputs[output]);
            if (!fed.Add(input))
            {
                error($"{at}.input", $"input '{slot.Name}' is the state of two pairs.");
            }

            if (slot.Shared || slot.Type is TensorElementType.String or TensorElementType.Bool)
            {
                error($"{at}.input", $"input '{slot.Name}' cannot carry state: a state is numeric, with a batch axis.");
                continue;
            }

            if (next.Type != slot.Type)
            {
                error($"{at}.output", $"output '{next.Name}' is {next.Type.ToWire()}, but its state input '{slot.Name}' is {slot.Type.ToWire()}.");
                continue;
            }

            var own = OwnDims(slot);
            if (own.Any(d => d < 0))
            {
                error($"{at}.input", $"input '{slot.Name}' has a dynamic axis besides its batch axis; a state has a fixed size (give it in \"dims\").");
                continue;
            }

            // An output with no shape in the file is checked when it runs.
            if (next.Rank > 0 && !OwnDims(next).SequenceEqual(own))
            {
                error($"{at}.output", $"output '{next.Name}' is [{string.Join(',', OwnDims(next))}] besides its batch axis, but its state input '{slot.Name}' is [{string.Join(',', own)}].");
                continue;
            }

            states.Add(new StatePair(input, output, slot.Type, own.Aggregate(1L, (a, b) => a * b), Element(slot.Type, pairs[i].Initial ?? 0)));
        }

        var start = Control(config.StartInput, "sequence.start_input", inputs, fed, error);
        var end = Control(config.EndInput, "sequence.end_input", inputs, fed, error);
        var signature = new SequenceSignature(states.ToImmutable(), start, end);
        if (config.Window is { Output: { Length: > 0 } windowed } window)
        {
            CheckWindow(window, windowed, outputs, signature, error);
        }

        return signature;
    }

    /// <summary>A window is kept over a numeric output that clients receive, and its element is in the output's row.</summary>
    private static void CheckWindow(WindowConfig window, string name, List<TensorSlot> outputs, SequenceSignature signature, Action<string?, string> error)
    {
        var index = outputs.FindIndex(s => s.Name == name);
        if (index < 0)
        {
            error("sequence.window.output", $"the model has no output '{name}' (it has {string.Join(", ", outputs.Where((_, k) => !signature.IsState(k)).Select(s => s.Name))}).");
            return;
        }

        var slot = outputs[index];
        if (signature.IsState(index))
        {
            error("sequence.window.output", $"output '{name}' is a state: clients never see it. Keep the window over an output they receive.");
        }
        else if (slot.Type == TensorElementType.String)
        {
            error("sequence.window.output", $"output '{name}' is a string: a window is kept over numbers.");
        }
        else if (window.Element is { } element && slot.Rank > 0)
        {
            // A row with a dynamic axis is checked when it runs: a result without the element leaves the window as it was.
            var own = OwnDims(slot);
            var row = own.Aggregate(1L, (a, b) => a * b);
            if (own.All(d => d >= 0) && element >= row)
            {
                error("sequence.window.element", $"output '{name}' has {row} elements per row; element {element} is past them.");
            }
        }
    }

    private static int? Control(string? name, string field, List<TensorSlot> inputs, HashSet<int> fed, Action<string?, string> error)
    {
        if (name is null)
        {
            return null;
        }

        var index = inputs.FindIndex(s => s.Name == name);
        if (index < 0)
        {
            error(field, $"the model has no input '{name}' (it has {string.Join(", ", inputs.Select(s => s.Name))}).");
            return null;
        }

        var slot = inputs[index];
        if (!fed.Add(index))
        {
            error(field, $"input '{name}' is already fed by the grid (a state, or the other flag).");
        }
        else if (slot.Shared || slot.Type == TensorElementType.String || OwnDims(slot).Any(d => d != 1))
        {
            error(field, $"input '{name}' cannot be a flag: a flag is a bool or number, one per row (every axis but the batch axis of size 1).");
        }

        return index;
    }

    private static long[] OwnDims(TensorSlot slot) => [.. slot.Dims.Where((_, k) => slot.IsOwnAxis(k))];

    /// <summary>One element of <paramref name="type"/> holding <paramref name="value"/>, little-endian.</summary>
    public static byte[] Element(TensorElementType type, double value)
    {
        var bytes = new byte[type.ElementSize()];
        switch (type)
        {
            case TensorElementType.Float32: BinaryPrimitives.WriteSingleLittleEndian(bytes, (float)value); break;
            case TensorElementType.Float64: BinaryPrimitives.WriteDoubleLittleEndian(bytes, value); break;
            case TensorElementType.Float16: BinaryPrimitives.WriteHalfLittleEndian(bytes, (Half)value); break;
            case TensorElementType.Int64: BinaryPrimitives.WriteInt64LittleEndian(bytes, (long)value); break;
            case TensorElementType.Int32: BinaryPrimitives.WriteInt32LittleEndian(bytes, (int)value); break;
            case TensorElementType.Int16: BinaryPrimitives.WriteInt16LittleEndian(bytes, (short)value); break;
            case TensorElementType.Int8: bytes[0] = (byte)(sbyte)value; break;
            default: bytes[0] = value != 0 ? (byte)Math.Min(value, byte.MaxValue) : (byte)0; break;
        }

        return bytes;
    }
}
