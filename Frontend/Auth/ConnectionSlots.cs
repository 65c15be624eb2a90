using System.Collections.Concurrent;

namespace StreamInfer.Frontend.Auth;

/// <summary>The WebSocket connections and gRPC streams each keyed client holds on this frontend, against its key's cap.</summary>
internal sealed class ConnectionSlots
{
    private readonly ConcurrentDictionary<string, int> _held = new(StringComparer.Ordinal);

    /// <summary>Takes one of <paramref name="client"/>'s <paramref name="cap"/> slots; false when all are held.</summary>
    public bool TryTake(string client, int cap)
    {
        while (true)
        {
            var held = _held.GetOrAdd(client, 0);
            if (held >= cap)
            {
                return false;
            }

            if (_held.TryUpdate(client, held + 1, held))
            {
                return true;
            }
        }
    }

    /// <summary>Gives a slot back; a client holding none is forgotten.</summary>
    public void Release(string client)
    {
        while (_held.TryGetValue(client, out var held))
        {
            if (held <= 1 ? _held.TryRemove(KeyValuePair.Create(client, held)) : _held.TryUpdate(client, held - 1, held))
            {
                return;
            }
        }
    }

    /// <summary>Slots <paramref name="client"/> holds now.</summary>
    public int Held(string client) => _held.TryGetValue(client, out var held) ? held : 0;
}
