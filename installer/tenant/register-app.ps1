<#
.SYNOPSIS
Register Lifeboat in your Microsoft Entra ID tenant with Microsoft Graph PowerShell, instead of clicking
through the Entra admin center (docs/operations.md, "Use it with your tenant", says what each step is for).

.DESCRIPTION
Creates (or updates, when an app of that name exists) a single-tenant public-client app with the delegated
Microsoft Graph permissions Lifeboat asks for and nothing more (desktop/auth.py), the redirect URIs of the
system browser (http://localhost) and of WAM, Windows' sign-in broker
(ms-appx-web://Microsoft.AAD.BrokerPlugin/<client id>), "Allow public client flows" (device code sign-in),
and admin consent for the whole organisation. Prints the TENANTID and CLIENTID for the MSI.

Needs the Microsoft.Graph.Applications and Microsoft.Graph.Identity.SignIns modules
(Install-Module Microsoft.Graph -Scope CurrentUser) and an admin who may consent.

.EXAMPLE
./register-app.ps1 -TenantId contoso.onmicrosoft.com
#>
#Requires -Modules Microsoft.Graph.Applications, Microsoft.Graph.Identity.SignIns
param(
    [Parameter(Mandatory = $true)] [string] $TenantId,
    [string] $DisplayName = "Lifeboat"
)
$ErrorActionPreference = "Stop"

$GraphAppId = "00000003-0000-0000-c000-000000000000"  # Microsoft Graph
$Permissions = [ordered]@{  # delegated permission ids, Microsoft Graph permissions reference
    "Mail.ReadWrite" = "024d486e-b451-40bb-833d-3e66d98c5c73"
    "Mail.Send"      = "e383f46e-2787-4529-855e-0e479a3ffac0"
    "User.Read"      = "e1fe6dd8-ba31-4d61-89e7-88639da4683d"
    "openid"         = "37f7f235-527c-4136-accd-4a02d197296e"
    "profile"        = "14dad69e-099b-42c9-810b-d002981feec1"
    "offline_access" = "7427e0e9-2fba-42fe-b0c0-848c9e6a8182"
}

Connect-MgGraph -TenantId $TenantId -NoWelcome `
    -Scopes "Application.ReadWrite.All", "DelegatedPermissionGrant.ReadWrite.All"

$Access = @{
    ResourceAppId  = $GraphAppId
    ResourceAccess = @($Permissions.Values | ForEach-Object { @{ Id = $_; Type = "Scope" } })
}
$App = Get-MgApplication -Filter "displayName eq '$DisplayName'" | Select-Object -First 1
if (-not $App) {
    $App = New-MgApplication -DisplayName $DisplayName -SignInAudience "AzureADMyOrg" `
        -IsFallbackPublicClient:$true -RequiredResourceAccess @($Access)
    Write-Output "created the app registration $DisplayName ($($App.AppId))"
} else {
    Write-Output "updating the existing app registration $DisplayName ($($App.AppId))"
}
# the broker's redirect URI names the client id, so it can only be set once the app exists
$RedirectUris = @("http://localhost", "ms-appx-web://Microsoft.AAD.BrokerPlugin/$($App.AppId)")
Update-MgApplication -ApplicationId $App.Id -IsFallbackPublicClient:$true `
    -PublicClient @{ RedirectUris = $RedirectUris } -RequiredResourceAccess @($Access)

$Sp = Get-MgServicePrincipal -Filter "appId eq '$($App.AppId)'" | Select-Object -First 1
if (-not $Sp) {
    $Sp = New-MgServicePrincipal -AppId $App.AppId
}
$GraphSp = Get-MgServicePrincipal -Filter "appId eq '$GraphAppId'" | Select-Object -First 1

# admin consent: one organisation-wide delegated grant (AllPrincipals) for exactly these permissions
$Scope = ($Permissions.Keys -join " ")
$Grant = Get-MgOauth2PermissionGrant -Filter "clientId eq '$($Sp.Id)' and resourceId eq '$($GraphSp.Id)'" |
    Where-Object { $_.ConsentType -eq "AllPrincipals" } | Select-Object -First 1
if ($Grant) {
    Update-MgOauth2PermissionGrant -OAuth2PermissionGrantId $Grant.Id -Scope $Scope
} else {
    New-MgOauth2PermissionGrant -ClientId $Sp.Id -ConsentType "AllPrincipals" -ResourceId $GraphSp.Id `
        -Scope $Scope | Out-Null
}

$Tenant = (Get-MgContext).TenantId
Write-Output ""
Write-Output "Done. Give Lifeboat these values:"
Write-Output "  MSI:    msiexec /i Lifeboat.msi TENANTID=$Tenant CLIENTID=$($App.AppId) ..."
Write-Output "  config: [account] tenant = `"$Tenant`", client_id = `"$($App.AppId)`""
Write-Output "Then: lifeboat login, lifeboat doctor, lifeboat run."
