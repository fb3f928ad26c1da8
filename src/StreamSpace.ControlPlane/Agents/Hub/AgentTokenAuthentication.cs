using System.Security.Claims;
using System.Text.Encodings.Web;
using Microsoft.AspNetCore.Authentication;
using Microsoft.Extensions.Options;
using StreamSpace.ControlPlane.Hosting;

namespace StreamSpace.ControlPlane.Agents.Hub;

/// <summary>
/// Authenticates an agent's control channel before the WebSocket upgrade (contract §1): the bearer token
/// must match <c>agents.token_hash</c> of the agent named in <c>X-StreamSpace-Agent-Id</c>, so a token
/// authenticates only its own agent. Compared in constant time; the token is never logged.
/// </summary>
public sealed class AgentTokenAuthentication(
    IOptionsMonitor<AuthenticationSchemeOptions> options, ILoggerFactory loggerFactory, UrlEncoder encoder, AgentTokenHashes tokenHashes)
    : AuthenticationHandler<AuthenticationSchemeOptions>(options, loggerFactory, encoder)
{
    public const string SchemeName = "AgentToken";
    public const string AgentIdHeader = "X-StreamSpace-Agent-Id";
    /// <summary>Claim carrying the authenticated agent id.</summary>
    public const string AgentIdClaim = "agent_id";
    /// <summary>
    /// Claim carrying the stored hash the token matched (never the token): the hello is written only while the agent
    /// still has that token, so a socket authenticated just before a rotation cannot come online after it.
    /// </summary>
    public const string TokenHashClaim = "agent_token_hash";

    protected override async Task<AuthenticateResult> HandleAuthenticateAsync()
    {
        var agentId = Request.Headers[AgentIdHeader].ToString();
        var authorization = Request.Headers.Authorization.ToString();
        if (agentId.Length == 0 || !authorization.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase))
            return AuthenticateResult.NoResult();
        var token = authorization["Bearer ".Length..].Trim();
        if (token.Length == 0 || agentId.Length > 64)
            return AuthenticateResult.Fail("malformed agent credentials");

        var storedHash = await tokenHashes.FindAsync(agentId, Context.RequestAborted);
        // Unknown agent and wrong token look the same to the caller.
        if (storedHash is null || !AgentTokens.Matches(token, storedHash))
        {
            Logger.LogWarning(HubEvents.AgentAuthFailed, "Agent authentication failed for agent {AgentId} from {RemoteIp}",
                agentId, Context.Connection.RemoteIpAddress);
            return AuthenticateResult.Fail("invalid agent token");
        }
        var identity = new ClaimsIdentity([new Claim(AgentIdClaim, agentId), new Claim(TokenHashClaim, storedHash), new Claim(ClaimTypes.Name, agentId)], SchemeName);
        return AuthenticateResult.Success(new AuthenticationTicket(new ClaimsPrincipal(identity), SchemeName));
    }

    protected override async Task HandleChallengeAsync(AuthenticationProperties properties)
    {
        Response.StatusCode = StatusCodes.Status401Unauthorized;
        Response.Headers.WWWAuthenticate = "Bearer";
        await Response.WriteAsJsonAsync(new ApiError("Unauthorized",
            $"An agent connects with 'Authorization: Bearer <agent token>' and '{AgentIdHeader}: <agentId>'; the token must belong to that agent."),
            Context.RequestAborted);
    }

    protected override Task HandleForbiddenAsync(AuthenticationProperties properties)
    {
        Response.StatusCode = StatusCodes.Status403Forbidden;
        return Response.WriteAsJsonAsync(new ApiError("Forbidden", "Only agents may open the agent control channel."), Context.RequestAborted);
    }
}
