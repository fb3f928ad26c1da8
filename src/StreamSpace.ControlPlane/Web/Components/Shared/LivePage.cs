using Microsoft.AspNetCore.Components;
using Microsoft.Extensions.Options;

namespace StreamSpace.ControlPlane.Web.Components.Shared;

/// <summary>
/// A page that shows live data: loads once when rendered, then, once interactive, refreshes every
/// <see cref="WebUiOptions.LiveRefreshInterval"/> (a timer on the injected <see cref="TimeProvider"/>) until
/// the page is left.
/// </summary>
public abstract class LivePage : ComponentBase, IAsyncDisposable
{
    private readonly CancellationTokenSource _stop = new();
    private Task? _loop;

    [Inject] protected TimeProvider Time { get; set; } = default!;
    [Inject] protected IOptions<WebUiOptions> UiOptions { get; set; } = default!;
    [Inject] private ILogger<LivePage> Logger { get; set; } = default!;

    /// <summary>Cancelled when the page is left.</summary>
    protected CancellationToken PageClosing => _stop.Token;

    /// <summary>The time the page's ages are computed against (refreshed with each load).</summary>
    protected DateTimeOffset Now { get; private set; }

    /// <summary>Loads the page's data; failures are shown by the page, not thrown.</summary>
    protected abstract Task RefreshAsync(CancellationToken ct);

    protected override async Task OnInitializedAsync()
    {
        Now = Time.GetUtcNow();
        await RefreshAsync(_stop.Token);
    }

    protected override void OnAfterRender(bool firstRender)
    {
        if (firstRender && RendererInfo.IsInteractive)
            _loop = RefreshLoopAsync(_stop.Token);
    }

    private async Task RefreshLoopAsync(CancellationToken ct)
    {
        using var timer = new PeriodicTimer(UiOptions.Value.LiveRefreshInterval, Time);
        try
        {
            while (await timer.WaitForNextTickAsync(ct))
            {
                await InvokeAsync(async () =>
                {
                    Now = Time.GetUtcNow();
                    await RefreshAsync(ct);
                    StateHasChanged();
                });
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            // The page was left.
        }
        catch (Exception ex)
        {
            Logger.LogError(ex, "Live refresh of {Page} stopped", GetType().Name);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        if (_loop is not null) await _loop;
        _stop.Dispose();
        GC.SuppressFinalize(this);
    }
}
