using System.Reflection;
using System.Reflection.Emit;
using StreamInfer.Grains.Devices;
using StreamInfer.Grains.Models;
using StreamInfer.Grains.Options;

namespace StreamInfer.Tests.Grains;

/// <summary>
/// The engine (devices, models, ONNX Runtime, decoding, tokenizers, the repository, and the catalog that holds them)
/// uses no Orleans type, so that it can run, and be tested, without a silo. Grains are Orleans' face of it and may.
/// </summary>
public sealed class EngineDependencyTests
{
    private static readonly string[] EngineNamespaces =
    [
        "StreamInfer.Grains.Devices",
        "StreamInfer.Grains.Models",
        "StreamInfer.Grains.Models.Onnx",
        "StreamInfer.Grains.Models.Decoding",
        "StreamInfer.Grains.Models.Repository",
    ];

    private static readonly Type[] EngineOptions =
    [
        typeof(ModelsOptions), typeof(ModelOptions), typeof(InputSpec), typeof(ModelsOptionsValidator),
        typeof(ModelRepositoryOptions), typeof(DeviceOptions), typeof(DeviceOptionsValidator),
    ];

    [Fact]
    public void EngineTypes_ReferenceNoOrleansAssembly()
    {
        var engine = EngineTypes().ToList();
        var offences = engine
            .SelectMany(t => Referenced(t).Where(IsOrleans).Select(r => $"{t.FullName} uses {r.FullName} ({r.Assembly.GetName().Name})"))
            .Distinct()
            .Order(StringComparer.Ordinal)
            .ToList();

        Assert.Contains(typeof(ModelCatalog), engine);
        Assert.Contains(typeof(DeviceWorker), engine);
        Assert.True(offences.Count == 0, string.Join(Environment.NewLine, offences));
    }

    [Fact]
    public void Referenced_GrainType_SeesOrleans()
    {
        // The check must be able to fail: a grain of the same namespace does use Orleans.
        var grain = typeof(ModelCatalog).Assembly.GetType("StreamInfer.Grains.Models.ModelInfoGrain", throwOnError: true)!;

        Assert.Contains(Referenced(grain), IsOrleans);
    }

    private static IEnumerable<Type> EngineTypes()
        => typeof(ModelCatalog).Assembly.GetTypes()
            .Where(t => (EngineNamespaces.Contains(t.Namespace) && !IsGrain(t)) || EngineOptions.Contains(t));

    private static bool IsGrain(Type type)
    {
        for (var t = type; t is not null; t = t.DeclaringType)
        {
            if (typeof(Grain).IsAssignableFrom(t))
            {
                return true;
            }
        }

        return false;
    }

    private static bool IsOrleans(Type type) => type.Assembly.GetName().Name!.StartsWith("Orleans", StringComparison.Ordinal);

    /// <summary>Every type <paramref name="type"/> names: in its declaration, its members' signatures and attributes, and its methods' code.</summary>
    private static IEnumerable<Type> Referenced(Type type)
    {
        const BindingFlags declared = BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly;
        var found = new List<Type>();
        void Add(Type? t)
        {
            if (t is null || t.IsGenericParameter)
            {
                return;
            }

            found.Add(t);
            if (t.HasElementType)
            {
                Add(t.GetElementType());
            }

            if (t.IsConstructedGenericType)
            {
                foreach (var argument in t.GenericTypeArguments)
                {
                    Add(argument);
                }
            }
        }

        void Attributes(MemberInfo member)
        {
            foreach (var attribute in member.CustomAttributes)
            {
                Add(attribute.AttributeType);
            }
        }

        Add(type.BaseType);
        Attributes(type);
        foreach (var i in type.GetInterfaces())
        {
            Add(i);
        }

        foreach (var field in type.GetFields(declared))
        {
            Add(field.FieldType);
            Attributes(field);
        }

        foreach (var property in type.GetProperties(declared))
        {
            Add(property.PropertyType);
            Attributes(property);
        }

        foreach (var method in type.GetMethods(declared).Cast<MethodBase>().Concat(type.GetConstructors(declared)))
        {
            Attributes(method);
            Add((method as MethodInfo)?.ReturnType);
            foreach (var parameter in method.GetParameters())
            {
                Add(parameter.ParameterType);
            }

            foreach (var member in CodeReferences(method))
            {
                Add(member as Type ?? member.DeclaringType);
                Add((member as FieldInfo)?.FieldType);
                Add((member as MethodInfo)?.ReturnType);
            }
        }

        return found;
    }

    /// <summary>The types, methods and fields a method's IL names.</summary>
    private static IEnumerable<MemberInfo> CodeReferences(MethodBase method)
    {
        var il = method.GetMethodBody()?.GetILAsByteArray();
        if (il is null)
        {
            return [];
        }

        var members = new List<MemberInfo>();
        var typeArguments = method.DeclaringType?.IsGenericType == true ? method.DeclaringType.GetGenericArguments() : null;
        var methodArguments = method.IsGenericMethod ? method.GetGenericArguments() : null;
        for (var at = 0; at < il.Length;)
        {
            var opCode = il[at] == 0xFE ? TwoByte[il[at + 1]] : OneByte[il[at]];
            at += opCode.Size;
            switch (opCode.OperandType)
            {
                case OperandType.InlineMethod or OperandType.InlineField or OperandType.InlineType or OperandType.InlineTok:
                    try
                    {
                        members.Add(method.Module.ResolveMember(BitConverter.ToInt32(il, at), typeArguments, methodArguments)!);
                    }
                    catch (ArgumentException)
                    {
                    }

                    at += 4;
                    break;
                case OperandType.InlineSwitch:
                    at += 4 + (4 * BitConverter.ToInt32(il, at));
                    break;
                case OperandType.InlineI8 or OperandType.InlineR:
                    at += 8;
                    break;
                case OperandType.InlineNone:
                    break;
                case OperandType.ShortInlineBrTarget or OperandType.ShortInlineI or OperandType.ShortInlineVar:
                    at += 1;
                    break;
                case OperandType.InlineVar:
                    at += 2;
                    break;
                default:
                    at += 4;
                    break;
            }
        }

        return members;
    }

    private static readonly OpCode[] OneByte = OpCodeTable(oneByte: true);
    private static readonly OpCode[] TwoByte = OpCodeTable(oneByte: false);

    private static OpCode[] OpCodeTable(bool oneByte)
    {
        var table = new OpCode[256];
        foreach (var field in typeof(OpCodes).GetFields(BindingFlags.Public | BindingFlags.Static))
        {
            var code = (OpCode)field.GetValue(null)!;
            if ((code.Size == 1) == oneByte)
            {
                table[(ushort)code.Value & 0xFF] = code;
            }
        }

        return table;
    }
}
