// Smoke test of the generated Kotlin client (clients/kotlin) against a live server.
//
// Usage: java ... SmokeKt <base-url> <full-api-key> <app-api-key>
// Prints one line per check, `SMOKE_DEVICES <group> <device-a> <device-b>` for the caller's
// database checks, and exits 1 if any check failed (2 on an unexpected exception).
//
// Written as an app would use the client: two phones (A and B) share the app-scope API key an
// app build ships, register, and then act with their own device tokens. One function per area
// of the API, run in order by main() and sharing a Smoke context; a new area is a new function
// added to the list in main().
package com.phonemanager.smoke

import com.phonemanager.client.apis.DevicesApi
import com.phonemanager.client.apis.HistoryApi
import com.phonemanager.client.apis.KeysApi
import com.phonemanager.client.apis.LocationsApi
import com.phonemanager.client.apis.PrivacyApi
import com.phonemanager.client.infrastructure.ApiClient
import com.phonemanager.client.infrastructure.ClientError
import com.phonemanager.client.infrastructure.ClientException
import com.phonemanager.client.infrastructure.Serializer
import com.phonemanager.client.infrastructure.Success
// OkHttp 4's `response.code` and `response.body` are members; on Debian's OkHttp 3.13 the test-only
// shim supplies them (contract/kotlin-smoke/OkHttp4Compat.kt), so this reads like app code.
import com.phonemanager.client.infrastructure.body
import com.phonemanager.client.infrastructure.code
import com.phonemanager.client.models.CreateInviteRequest
import com.phonemanager.client.models.DeviceListResponse
import com.phonemanager.client.models.ErrorResponse
import com.phonemanager.client.models.HistoryResponse
import com.phonemanager.client.models.KeyScope
import com.phonemanager.client.models.LocationEventResponse
import com.phonemanager.client.models.LocationRequest
import com.phonemanager.client.models.MemberChange
import com.phonemanager.client.models.MemberEventResponse
import com.phonemanager.client.models.Order
import com.phonemanager.client.models.Platform
import com.phonemanager.client.models.RegisterDeviceRequest
import com.phonemanager.client.models.UploadLocationBatchRequest
import com.phonemanager.client.models.UploadLocationRequest
import com.phonemanager.client.models.UploadResponse
import java.io.BufferedReader
import java.io.IOException
import java.io.InputStream
import java.io.OutputStream
import java.net.HttpURLConnection
import java.net.InetAddress
import java.net.ServerSocket
import java.net.URL
import java.util.UUID
import java.util.concurrent.CopyOnWriteArrayList
import java.util.concurrent.CountDownLatch
import java.util.concurrent.TimeUnit
import kotlin.concurrent.thread
import kotlin.system.exitProcess
import kotlinx.coroutines.CoroutineScope
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.async
import kotlinx.coroutines.delay
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.runInterruptible
import kotlinx.coroutines.withTimeout
import kotlinx.coroutines.withTimeoutOrNull
import kotlinx.serialization.SerializationException
import kotlinx.serialization.json.Json
import okhttp3.Call
import okhttp3.OkHttpClient
import okhttp3.Request
import okhttp3.Response

// --- checks ---------------------------------------------------------------------------------

private var failures = 0

private fun check(what: String, ok: Boolean, detail: () -> Any? = { null }) {
    if (ok) {
        println("  ok   $what")
    } else {
        failures++
        println("  FAIL $what${detail()?.let { ": $it" } ?: ""}")
    }
}

/** The raw body of a 4xx answer: the client keeps it as a String. */
private fun ClientException.rawBody(): String? = (response as? ClientError<*>)?.body as? String

/** The error envelope of a 4xx answer as the typed ErrorResponse, read as clients/kotlin/README.md shows. */
private fun ClientException.errorBody(): ErrorResponse? =
    rawBody()?.let { runCatching { Serializer.kotlinxSerializationJson.decodeFromString<ErrorResponse>(it) }.getOrNull() }

private fun header(headers: Map<String, List<String>>, name: String): String? =
    headers.entries.firstOrNull { it.key.equals(name, ignoreCase = true) }?.value?.firstOrNull()

/** Runs [call], which must fail with HTTP [status] and error code [code]; returns the exception. */
private suspend fun expectClientError(what: String, status: Int, code: ErrorResponse.Error, call: suspend () -> Unit): ClientException? {
    try {
        call()
        check(what, false) { "expected HTTP $status, the call succeeded" }
    } catch (e: ClientException) {
        val body = e.errorBody()
        check(what, e.statusCode == status && body?.error == code) {
            "expected $status/$code, got ${e.statusCode}/${body?.error} (${e.rawBody()})"
        }
        return e
    }
    return null
}

// --- shared state ---------------------------------------------------------------------------

/**
 * One installed app: the app-scope key every build ships, and the device token this install got
 * when it registered (kept in memory here; an app keeps it in Keystore-backed storage). Both
 * headers are added by one OkHttp interceptor, as the client README recommends.
 */
private class Phone(val baseUrl: String, appKey: String, val deviceId: UUID) {
    @Volatile var deviceToken: String? = null

    val http: OkHttpClient = OkHttpClient.Builder()
        .addInterceptor { chain ->
            val request = chain.request().newBuilder().header("X-API-Key", appKey)
            deviceToken?.let { request.header("Authorization", "Bearer $it") }
            chain.proceed(request.build())
        }
        .build()
    val devices = DevicesApi(baseUrl, http)
    val locations = LocationsApi(baseUrl, http)
    val history = HistoryApi(baseUrl, http)
    val keys = KeysApi(baseUrl, http)
    val privacy = PrivacyApi(baseUrl, http)
}

/** What the areas share: the keys, the two phones and their group. */
private class Smoke(val baseUrl: String, val fullKey: String, val appKey: String) {
    val group = "smoke-" + UUID.randomUUID().toString().substring(0, 8)
    val a = Phone(baseUrl, appKey, UUID.randomUUID())
    val b = Phone(baseUrl, appKey, UUID.randomUUID())
    val now = System.currentTimeMillis()

    /** A's single fix (uploads), read back by listing and export. */
    val single = UploadLocationRequest(
        deviceId = a.deviceId, timestamp = now - 120_000, latitude = 48.1374, longitude = 11.5755, accuracy = 12.5,
        provider = "fused", batteryLevel = 81,
    )

    /** B's batch (uploads), sent with an Idempotency-Key; read back by the history pages. */
    val batch = UploadLocationBatchRequest(
        deviceId = b.deviceId,
        locations = listOf(
            LocationRequest(timestamp = now - 90_000, latitude = 52.5200, longitude = 13.4050, accuracy = 8.0),
            LocationRequest(timestamp = now - 30_000, latitude = 52.5210, longitude = 13.4060, accuracy = 5.0, speed = 1.4),
            LocationRequest(timestamp = now - 60_000, latitude = 52.5205, longitude = 13.4055, accuracy = 6.0),
        ),
    )
}

// --- main -----------------------------------------------------------------------------------

fun main(args: Array<String>) {
    if (args.size != 3) {
        System.err.println("usage: SmokeKt <base-url> <full-api-key> <app-api-key>")
        exitProcess(64)
    }
    val s = Smoke(args[0], args[1], args[2])
    println("SMOKE_DEVICES ${s.group} ${s.a.deviceId} ${s.b.deviceId}")
    try {
        runBlocking {
            auth(s)
            registration(s)
            deviceToken(s)
            uploads(s)
            listing(s)
            history(s)
            errors(s)
            privacy(s)
            plainKotlinxSerialization(s)
            liveStream(s)
            cancellation()
            deactivation(s)
        }
    } catch (e: Exception) {
        println("  FAIL unexpected exception")
        e.printStackTrace(System.out)
        exitProcess(2)
    }
    if (failures > 0) {
        println("kotlin smoke: $failures check(s) failed")
        exitProcess(1)
    }
    println("kotlin smoke: all checks passed")
    // OkHttp's dispatcher threads (enqueue) are not daemons and idle for 60 s before exiting.
    exitProcess(0)
}

// --- areas ----------------------------------------------------------------------------------

/** X-API-Key: missing (401 envelope), a full key set by an interceptor and in ApiClient.apiKey. */
private suspend fun auth(s: Smoke) {
    expectClientError("a request without X-API-Key gets 401 unauthorized", 401, ErrorResponse.Error.UNAUTHORIZED) {
        KeysApi(s.baseUrl).getCurrentKey()
    }
    val fullHttp = OkHttpClient.Builder()
        .addInterceptor { chain -> chain.proceed(chain.request().newBuilder().header("X-API-Key", s.fullKey).build()) }
        .build()
    val me = KeysApi(s.baseUrl, fullHttp).getCurrentKey()
    check("GET /keys/current describes the full key (interceptor)", s.fullKey.startsWith(me.prefix) && !me.isAdmin && me.scope == KeyScope.FULL) { me }
    // The generated alternative: the process-wide key map read by every API instance.
    ApiClient.apiKey["X-API-Key"] = s.fullKey
    try {
        check("GET /keys/current with ApiClient.apiKey", KeysApi(s.baseUrl).getCurrentKey().prefix == me.prefix)
    } finally {
        ApiClient.apiKey.remove("X-API-Key")
    }
}

/**
 * Two phones on the app key: A founds the group (a new device gets its token once), invites B
 * (an invitation needs A's token), B joins with the code. Without a token the app key may only
 * register; without a code B could not join.
 */
private suspend fun registration(s: Smoke) {
    val a = s.a.devices.registerDevice(RegisterDeviceRequest(deviceId = s.a.deviceId, displayName = "Alice's Phone", groupId = s.group))
    check("register A with the app key (platform defaults to android)", a.deviceId == s.a.deviceId && a.groupId == s.group && a.platform == Platform.ANDROID) { a }
    check("A's registration answers its device token (pmd_...)", a.deviceToken?.startsWith("pmd_") == true) { a.deviceToken }
    s.a.deviceToken = a.deviceToken
    val app = s.a.keys.getCurrentKey()
    check("with its token, A's key describes itself: scope app", app.scope == KeyScope.APP && s.appKey.startsWith(app.prefix)) { app }

    expectClientError("the app key without a device token may not list a group (401)", 401, ErrorResponse.Error.UNAUTHORIZED) {
        DevicesApi(s.baseUrl, Phone(s.baseUrl, s.appKey, UUID.randomUUID()).http).listDevices(s.group)
    }
    expectClientError("B cannot join A's group without an invitation (403)", 403, ErrorResponse.Error.FORBIDDEN) {
        s.b.devices.registerDevice(RegisterDeviceRequest(deviceId = s.b.deviceId, displayName = "Bob's Phone", groupId = s.group))
    }
    val defaults = s.a.devices.createInvite(s.group) // no body: one use, 24 hours
    check("A invites with the defaults (no body): one use", defaults.maxUses == 1 && defaults.groupId == s.group) { defaults }
    val invite = s.a.devices.createInvite(s.group, CreateInviteRequest(maxUses = 2, expiresInHours = 1))
    check("A invites (max_uses 2, 1 hour): a nine-character code", invite.maxUses == 2 && invite.code.replace("-", "").length == 9) { invite }

    val b = s.b.devices.registerDevice(
        RegisterDeviceRequest(
            deviceId = s.b.deviceId, displayName = "Bob's Phone", groupId = s.group, platform = Platform.IOS,
            fcmToken = "fcm-smoke", inviteCode = invite.code.lowercase(),
        ),
    )
    check("B joins with the code (ios), and gets its own token", b.deviceId == s.b.deviceId && b.platform == Platform.IOS && b.deviceToken?.startsWith("pmd_") == true && b.deviceToken != a.deviceToken) { b }
    s.b.deviceToken = b.deviceToken
}

/** The device token: rotated by its device (the old one stops working at once), and re-registration. */
private suspend fun deviceToken(s: Smoke) {
    val old = s.a.deviceToken
    val renewed = s.a.devices.renewDeviceToken(s.a.deviceId)
    check("A rotates its token", renewed.deviceToken.startsWith("pmd_") && renewed.deviceToken != old) { renewed }
    expectClientError("the replaced token gets 401", 401, ErrorResponse.Error.UNAUTHORIZED) { s.a.devices.listDevices(s.group) }
    s.a.deviceToken = renewed.deviceToken
    check("the new token works", s.a.devices.listDevices(s.group).devices.size == 2)
    // The generated alternative to the interceptor: a token provider per API object.
    val tokenless = Phone(s.baseUrl, s.appKey, s.a.deviceId)
    val viaProvider = DevicesApi(s.baseUrl, tokenless.http).apply { accessTokenProvider = { s.a.deviceToken } }
    check("the token through the API object's accessTokenProvider works too", viaProvider.listDevices(s.group).devices.size == 2)
    val again = s.a.devices.registerDevice(RegisterDeviceRequest(deviceId = s.a.deviceId, displayName = "Alice's Phone", groupId = s.group))
    check("re-registering with its token keeps the token (none answered)", again.deviceToken == null && again.displayName == "Alice's Phone") { again }
}

/** A single fix, a batch with an Idempotency-Key, its replay, the key reused for other data, another device's upload. */
private suspend fun uploads(s: Smoke) {
    val single = s.a.locations.uploadLocationWithHttpInfo(s.single, null) as Success<*>
    val singleBody = single.data as UploadResponse
    check("A's single upload stores 1 fix", singleBody.success && singleBody.processedCount == 1 && singleBody.storedCount == 1) { singleBody }
    check("every answer carries X-Request-ID and the rate-limit headers", listOf("X-Request-ID", "X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset").all { header(single.headers, it) != null }) { single.headers }

    val key = UUID.randomUUID().toString()
    val first = s.b.locations.uploadLocationBatchWithHttpInfo(s.batch, key) as Success<*>
    val firstBody = first.data as UploadResponse
    check("B's batch stores 3 fixes", first.statusCode == 200 && firstBody.processedCount == 3 && firstBody.storedCount == 3) { firstBody }
    check("first batch is not a replay", header(first.headers, "Idempotent-Replayed") == null) { first.headers }
    val retry = s.b.locations.uploadLocationBatchWithHttpInfo(s.batch, key) as Success<*>
    check("batch retry with the same Idempotency-Key answers the same counts", retry.data == firstBody) { retry.data }
    check("batch retry is marked Idempotent-Replayed: true", header(retry.headers, "Idempotent-Replayed") == "true") { retry.headers }
    expectClientError("the same Idempotency-Key with another body gets 422", 422, ErrorResponse.Error.IDEMPOTENCY_KEY_REUSED) {
        s.b.locations.uploadLocationBatch(s.batch.copy(locations = s.batch.locations.take(1)), key)
    }
    val resent = s.b.locations.uploadLocationBatch(s.batch, UUID.randomUUID().toString())
    check("the same fixes under a new key are acknowledged as duplicates", resent.processedCount == 3 && resent.duplicateCount == 3 && resent.storedCount == 0) { resent }
    expectClientError("B's token cannot upload for A (403)", 403, ErrorResponse.Error.FORBIDDEN) {
        s.b.locations.uploadLocation(s.single.copy(timestamp = s.now - 10_000))
    }
}

/** The group listing shows both devices with their newest fix. */
private suspend fun listing(s: Smoke) {
    val listed = s.b.devices.listDevices(s.group).devices
    check("group lists both devices, sorted by name", listed.map { it.deviceId } == listOf(s.a.deviceId, s.b.deviceId)) { listed }
    val la = listed.firstOrNull { it.deviceId == s.a.deviceId }?.lastLocation
    check(
        "A's last_location is the single fix",
        la != null && la.latitude == 48.1374 && la.longitude == 11.5755 && la.accuracy == 12.5 &&
            la.timestamp.toInstant().toEpochMilli() == s.single.timestamp,
    ) { la }
    val lb = listed.firstOrNull { it.deviceId == s.b.deviceId }?.lastLocation
    check(
        "B's last_location is the batch's newest fix by capture time",
        lb != null && lb.latitude == 52.5210 && lb.longitude == 13.4060 && lb.timestamp.toInstant().toEpochMilli() == s.now - 30_000,
    ) { lb }
    check("last_seen_at is set", listed.all { it.lastSeenAt != null }) { listed }
}

/** B's trail read by A (same group): keyset pages with a cursor, the other order, a time range. */
private suspend fun history(s: Smoke) {
    val first = s.a.history.listDeviceLocations(s.b.deviceId, limit = 2)
    val firstTimes = first.locations.map { it.capturedAt.toInstant().toEpochMilli() }
    check("page 1: the two newest fixes, newest first", firstTimes == listOf(s.now - 30_000, s.now - 60_000)) { first }
    check("page 1 has more, with a cursor", first.pagination.hasMore && first.pagination.nextCursor != null) { first.pagination }
    check("page 1 states its length in metres (about 65 m)", first.distanceM > 50.0 && first.distanceM < 80.0) { first.distanceM }
    val fix = first.locations.first()
    check("a stored fix comes back exactly as sent", fix.latitude == 52.5210 && fix.longitude == 13.4060 && fix.accuracy == 5.0 && fix.speed == 1.4 && fix.batteryLevel == null) { fix }
    val second = s.a.history.listDeviceLocations(s.b.deviceId, limit = 2, cursor = first.pagination.nextCursor)
    check(
        "page 2 (the cursor): the oldest fix, the last page",
        second.locations.map { it.capturedAt.toInstant().toEpochMilli() } == listOf(s.now - 90_000) &&
            !second.pagination.hasMore && second.pagination.nextCursor == null,
    ) { second }
    val ascending = s.a.history.listDeviceLocations(s.b.deviceId, order = Order.ASC, from = s.now - 70_000)
    check(
        "order=asc from a time: the two later fixes, oldest first",
        ascending.locations.map { it.capturedAt.toInstant().toEpochMilli() } == listOf(s.now - 60_000, s.now - 30_000),
    ) { ascending }
    expectClientError("a cursor of another order is refused (400)", 400, ErrorResponse.Error.VALIDATION_ERROR) {
        s.a.history.listDeviceLocations(s.b.deviceId, order = Order.ASC, cursor = first.pagination.nextCursor)
    }
    expectClientError("another group's device is not found (404)", 404, ErrorResponse.Error.NOT_FOUND) {
        s.a.history.listDeviceLocations(UUID.randomUUID())
    }
}

/** 4xx answers: the error envelope decodes into the typed ErrorResponse, its code into the enum. */
private suspend fun errors(s: Smoke) {
    val invalid = expectClientError("an out-of-range latitude gets 400 validation_error", 400, ErrorResponse.Error.VALIDATION_ERROR) {
        s.a.locations.uploadLocation(s.single.copy(latitude = 123.0))
    }?.errorBody()
    check(
        "the validation error lists details (field latitude)",
        invalid != null && invalid.details.orEmpty().any { it.field == "latitude" } && invalid.message.isNotEmpty(),
    ) { invalid }
    val batchInvalid = expectClientError("an invalid batch fix gets 400 validation_error", 400, ErrorResponse.Error.VALIDATION_ERROR) {
        s.b.locations.uploadLocationBatch(s.batch.copy(locations = listOf(s.batch.locations[0], s.batch.locations[1].copy(accuracy = -1.0))))
    }?.errorBody()
    check("batch details name locations[1].accuracy", batchInvalid?.details?.any { it.field == "locations[1].accuracy" } == true) {
        batchInvalid
    }
    val notFound = expectClientError("an unknown device's data export gets 404 not_found", 404, ErrorResponse.Error.NOT_FOUND) {
        s.a.privacy.exportDeviceData(UUID.randomUUID())
    }
    // The envelope has no UUID or date field: a plain Json (as in a Ktor app) reads it too.
    val plain = notFound?.rawBody()?.let { Json { ignoreUnknownKeys = true }.decodeFromString<ErrorResponse>(it) }
    check("a plain Json { ignoreUnknownKeys = true } decodes the error envelope", plain?.error == ErrorResponse.Error.NOT_FOUND) { plain }
    // A code a newer server may add (the list is open): the envelope still decodes.
    val newer = """{"error":"quota_exhausted","message":"Something new","retry_after":5}"""
    val decoded = runCatching { Serializer.kotlinxSerializationJson.decodeFromString<ErrorResponse>(newer) }
    check("an unknown error code decodes as UNKNOWN_DEFAULT_OPEN_API", decoded.getOrNull()?.error == ErrorResponse.Error.UNKNOWN_DEFAULT_OPEN_API && decoded.getOrNull()?.retryAfter == 5L) {
        decoded.exceptionOrNull() ?: decoded.getOrNull()
    }
}

/** The data export (privacy tag) of A, with A's token: the device and its one fix. */
private suspend fun privacy(s: Smoke) {
    val export = s.a.privacy.exportDeviceData(s.a.deviceId)
    check(
        "the export of A holds the device and its single fix",
        export.device.deviceId == s.a.deviceId && export.device.platform == Platform.ANDROID && export.locationCount == 1L &&
            export.locations.singleOrNull()?.capturedAt?.toInstant()?.toEpochMilli() == s.single.timestamp,
    ) { export }
    expectClientError("B's token cannot export A (404: not B's to know)", 404, ErrorResponse.Error.NOT_FOUND) {
        s.b.privacy.exportDeviceData(s.a.deviceId)
    }
}

/** GET with the app key and a device token, without OkHttp (as a Ktor app would send it). */
private suspend fun fetchRaw(s: Smoke, phone: Phone, path: String): String = runInterruptible(Dispatchers.IO) {
    val connection = URL("${s.baseUrl}$path").openConnection() as HttpURLConnection
    connection.setRequestProperty("X-API-Key", s.appKey)
    connection.setRequestProperty("Authorization", "Bearer ${phone.deviceToken}")
    connection.setRequestProperty("Accept", "application/json")
    connection.inputStream.use { it.readBytes().toString(Charsets.UTF_8) }
}

/**
 * The models outside the generated API classes, as a Ktor app would use them: server responses
 * fetched without OkHttp (HttpURLConnection) and decoded with a plain kotlinx Json. Models with
 * UUID or java.time fields mark them @Contextual, so that Json needs the client's
 * SerializersModule; unknown keys are ignored and an unknown enum value becomes
 * UNKNOWN_DEFAULT_OPEN_API.
 */
private suspend fun plainKotlinxSerialization(s: Smoke) {
    val raw = fetchRaw(s, s.a, "/api/v1/devices?group_id=${s.group}")
    val viaClient = s.a.devices.listDevices(s.group)

    val ktorJson = Json {
        ignoreUnknownKeys = true
        serializersModule = Serializer.kotlinxSerializationAdapters
    }
    val decoded = runCatching { ktorJson.decodeFromString<DeviceListResponse>(raw) }
    check("Json { ignoreUnknownKeys; serializersModule = Serializer.kotlinxSerializationAdapters } decodes GET /devices like the client", decoded.getOrNull() == viaClient) {
        decoded.exceptionOrNull() ?: decoded.getOrNull()
    }
    val rawHistory = fetchRaw(s, s.a, "/api/v1/devices/${s.b.deviceId}/locations?limit=2")
    val history = runCatching { ktorJson.decodeFromString<HistoryResponse>(rawHistory) }
    check("the same Json decodes a history page like the client", history.getOrNull()?.locations == s.a.history.listDeviceLocations(s.b.deviceId, limit = 2).locations) {
        history.exceptionOrNull() ?: history.getOrNull()
    }
    val bare = runCatching { Json { ignoreUnknownKeys = true }.decodeFromString<DeviceListResponse>(raw) }
    check("without that module the UUID fields have no serializer (SerializationException, as the README says)", bare.exceptionOrNull() is SerializationException) {
        bare.exceptionOrNull() ?: "it decoded: the README's note on serializersModule is out of date"
    }

    // What a newer server might send: a platform this client does not know, and a new field.
    check("the raw JSON has A's platform as \"platform\":\"android\"", raw.contains("\"platform\":\"android\"")) { raw }
    val newer = raw.replace("\"platform\":\"android\"", "\"platform\":\"windows\"")
        .replaceFirst("{", "{\"next_cursor\":\"abc\",\"new_object\":{\"x\":[1,2]},")
    for ((name, json) in listOf("the client's Serializer" to Serializer.kotlinxSerializationJson, "the plain Json" to ktorJson)) {
        val members = runCatching { json.decodeFromString<DeviceListResponse>(newer).devices }
        check(
            "$name decodes an unknown platform (\"windows\") as UNKNOWN_DEFAULT_OPEN_API and skips unknown keys",
            members.getOrNull()?.map { it.platform } == listOf(Platform.UNKNOWN_DEFAULT_OPEN_API, Platform.IOS),
        ) { members.exceptionOrNull() ?: members.getOrNull() }
    }
}

/** One Server-Sent Event: its `event:` name, `id:` and `data:` (lines joined by newlines). */
private data class SseEvent(val event: String, val id: String?, val data: String)

/**
 * A group's live stream read the plain way: an OkHttp call whose body is read line by line
 * (what Ktor's SSE plugin or okhttp-sse do for an app). Comment lines (`: keep-alive`) and
 * `retry:` are skipped. Closing cancels the call.
 */
private class LiveStream(private val call: Call, response: Response) : AutoCloseable {
    private val reader: BufferedReader = response.body!!.charStream().buffered()

    /** The next event, waiting at most [timeoutMs]. */
    suspend fun next(timeoutMs: Long = 10_000): SseEvent = withTimeout(timeoutMs) {
        runInterruptible(Dispatchers.IO) {
            var event = "message"
            var id: String? = null
            val data = StringBuilder()
            while (true) {
                val line = reader.readLine() ?: throw IOException("the stream ended")
                when {
                    line.isEmpty() -> if (data.isNotEmpty()) return@runInterruptible SseEvent(event, id, data.toString())
                    line.startsWith(":") -> Unit
                    line.startsWith("event:") -> event = line.removePrefix("event:").trim()
                    line.startsWith("id:") -> id = line.removePrefix("id:").trim()
                    line.startsWith("data:") -> {
                        if (data.isNotEmpty()) data.append('\n')
                        data.append(line.removePrefix("data:").removePrefix(" "))
                    }
                }
            }
            @Suppress("UNREACHABLE_CODE")
            throw IllegalStateException()
        }
    }

    /** Events until one that [wanted] accepts (others, e.g. an earlier member's, are skipped). */
    suspend fun until(wanted: (SseEvent) -> Boolean): SseEvent {
        while (true) {
            val event = next()
            if (wanted(event)) return event
        }
    }

    override fun close() = call.cancel()

    companion object {
        /** Opens the stream of [group] for [phone]; a refusal is its status and error envelope. */
        suspend fun open(s: Smoke, phone: Phone, group: String, lastEventId: String? = null): Result<LiveStream> {
            val http = phone.http.newBuilder().readTimeout(30, TimeUnit.SECONDS).build()
            val request = Request.Builder()
                .url("${s.baseUrl}/api/v1/groups/$group/stream")
                .header("Accept", "text/event-stream")
                .apply { if (lastEventId != null) header("Last-Event-ID", lastEventId) }
                .build()
            val call = http.newCall(request)
            val response = runInterruptible(Dispatchers.IO) { call.execute() }
            if (response.code != 200) {
                val body = response.body?.string().orEmpty()
                response.close()
                return Result.failure(IllegalStateException("${response.code} $body"))
            }
            return Result.success(LiveStream(call, response))
        }
    }
}

/**
 * The live stream (`GET /api/v1/groups/{group}/stream`, not in the generated API: its call would
 * never return): the `snapshot` decodes into DeviceListResponse, a fix A uploads arrives as a
 * `location` event that decodes into LocationEventResponse with a plain kotlinx Json,
 * `Last-Event-ID` resumes after it, and B's deactivation arrives as a `member` event.
 */
private suspend fun liveStream(s: Smoke) {
    val json = Json {
        ignoreUnknownKeys = true
        serializersModule = Serializer.kotlinxSerializationAdapters
    }
    val refused = LiveStream.open(s, Phone(s.baseUrl, s.appKey, UUID.randomUUID()), s.group)
    check("without a device token the stream is refused with the 401 envelope", refused.exceptionOrNull()?.message?.let { it.startsWith("401 ") && json.decodeFromString<ErrorResponse>(it.substringAfter(' ')).error == ErrorResponse.Error.UNAUTHORIZED } == true) {
        refused.exceptionOrNull() ?: "it opened"
    }

    val lastId: String
    LiveStream.open(s, s.a, s.group).getOrThrow().use { stream ->
        val snapshot = stream.next()
        val listed = runCatching { json.decodeFromString<DeviceListResponse>(snapshot.data) }
        check(
            "the first event is a snapshot with an id, decoding into DeviceListResponse (both devices)",
            snapshot.event == "snapshot" && snapshot.id != null && listed.getOrNull()?.devices?.map { it.deviceId } == listOf(s.a.deviceId, s.b.deviceId),
        ) { listed.exceptionOrNull() ?: snapshot }

        val fix = UploadLocationRequest(
            deviceId = s.a.deviceId, timestamp = s.now - 5_000, latitude = 48.2082, longitude = 16.3738, accuracy = 7.5,
            altitude = 171.0, bearing = 90.0, speed = 0.8, provider = "gps", batteryLevel = 64, networkType = "wifi",
        )
        s.a.locations.uploadLocation(fix)
        val event = stream.until { it.event == "location" }
        val location = runCatching { json.decodeFromString<LocationEventResponse>(event.data) }
        val l = location.getOrNull()
        check(
            "A's upload arrives as a location event whose data decodes with a plain Json into LocationEventResponse, every field as sent",
            l != null && l.deviceId == s.a.deviceId && l.latitude == 48.2082 && l.longitude == 16.3738 && l.accuracy == 7.5 &&
                l.altitude == 171.0 && l.bearing == 90.0 && l.speed == 0.8 && l.provider == "gps" && l.batteryLevel == 64 &&
                l.networkType == "wifi" && l.timestamp.toInstant().toEpochMilli() == fix.timestamp,
        ) { location.exceptionOrNull() ?: event }
        check("the location event has an id", event.id?.isNotEmpty() == true) { event }
        lastId = event.id.orEmpty()
    }

    // While no stream is open, B stores a fix; reconnecting with Last-Event-ID resumes after A's.
    s.b.locations.uploadLocation(UploadLocationRequest(deviceId = s.b.deviceId, timestamp = s.now - 4_000, latitude = 52.5220, longitude = 13.4070, accuracy = 4.0))
    LiveStream.open(s, s.a, s.group, lastEventId = lastId).getOrThrow().use { stream ->
        val resumed = stream.next()
        val l = runCatching { json.decodeFromString<LocationEventResponse>(resumed.data) }.getOrNull()
        check(
            "Last-Event-ID resumes: the first event is B's fix stored meanwhile, not a snapshot",
            resumed.event == "location" && l?.deviceId == s.b.deviceId && l.latitude == 52.5220,
        ) { resumed }

        s.b.devices.deleteDevice(s.b.deviceId)
        val member = stream.until { it.event == "member" }
        val change = runCatching { json.decodeFromString<MemberEventResponse>(member.data) }.getOrNull()
        check("B's deactivation arrives as a member event (deactivated)", change?.change == MemberChange.DEACTIVATED && change.deviceId == s.b.deviceId) {
            member
        }
    }
}

/** Records every Call the API objects create, to look at it after cancelling. */
private class RecordingCallFactory(private val delegate: OkHttpClient) : Call.Factory {
    val calls = CopyOnWriteArrayList<Call>()

    override fun newCall(request: Request): Call = delegate.newCall(request).also { calls += it }
}

/**
 * A one-connection HTTP server on 127.0.0.1 that reads the request head, writes [respond] and then
 * never sends anything more, so a call to it stays in flight until it is cancelled.
 */
private class StallingServer(respond: (OutputStream) -> Unit) : AutoCloseable {
    private val socket = ServerSocket(0, 1, InetAddress.getLoopbackAddress())
    val baseUrl = "http://127.0.0.1:${socket.localPort}"
    val responded = CountDownLatch(1)
    val connectionClosed = CountDownLatch(1)

    init {
        thread(isDaemon = true, name = "stalling-server") {
            try {
                socket.accept().use { connection ->
                    val input = connection.getInputStream()
                    readRequestHead(input)
                    respond(connection.getOutputStream())
                    connection.getOutputStream().flush()
                    responded.countDown()
                    // The client closes the connection when its call is cancelled: EOF or reset.
                    try {
                        while (input.read() != -1) Unit
                    } catch (_: IOException) {
                    }
                    connectionClosed.countDown()
                }
            } catch (_: IOException) {
                // closed before a connection came
            }
        }
    }

    private fun readRequestHead(input: InputStream) {
        var last4 = 0
        while (last4 != 0x0d0a0d0a) {
            val b = input.read()
            if (b == -1) return
            last4 = (last4 shl 8) or b
        }
    }

    override fun close() = socket.close()
}

/**
 * Cancelling the coroutine of a call cancels the OkHttp Call: while waiting for the answer, and
 * while reading a body that is still arriving (a large data export on a slow network). The call
 * goes to a local server that stalls; the coroutine must end at once, the Call must report
 * isCanceled, and the server must see the connection closed.
 */
private suspend fun cancellation() {
    cancelInFlight("a call waiting for the response head") { }
    cancelInFlight("a call reading a response body") { out ->
        out.write("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{\"id\":1,".toByteArray())
    }
}

private suspend fun cancelInFlight(what: String, respond: (OutputStream) -> Unit) {
    StallingServer(respond).use { server ->
        // A read timeout far above the 2 s this check allows, but bounded so a failure ends.
        val factory = RecordingCallFactory(OkHttpClient.Builder().readTimeout(8, TimeUnit.SECONDS).build())
        val api = KeysApi(server.baseUrl, factory)
        // Its own scope, not a child of main's: if the cancellation does not work, the call's
        // late exception becomes a FAIL below instead of failing the whole run.
        val call = CoroutineScope(Dispatchers.Default).async { api.getCurrentKey() }
        val inFlight = runInterruptible(Dispatchers.IO) { server.responded.await(10, TimeUnit.SECONDS) }
        delay(300) // let the client take the head and start on the body
        val started = System.nanoTime()
        call.cancel()
        val ended = withTimeoutOrNull(5_000) { call.join() } != null
        val tookMs = (System.nanoTime() - started) / 1_000_000
        val closed = runInterruptible(Dispatchers.IO) { server.connectionClosed.await(5, TimeUnit.SECONDS) }
        val okhttpCall = factory.calls.singleOrNull()
        check("cancel $what: the coroutine ends within 2 s, cancelled", inFlight && ended && tookMs < 2_000 && call.isCancelled) {
            "in flight: $inFlight, ended: $ended after $tookMs ms, cancelled: ${call.isCancelled}"
        }
        check("cancel $what: the OkHttp Call is cancelled", okhttpCall?.isCanceled == true) { "calls: ${factory.calls}" }
        check("cancel $what: the connection to the server is closed", closed)
    }
}

/** B was deactivated (live stream): the listing shows A only, and B's token no longer lists the group. */
private suspend fun deactivation(s: Smoke) {
    val afterDelete = s.a.devices.listDevices(s.group).devices
    check("after B's DELETE only A is listed", afterDelete.map { it.deviceId } == listOf(s.a.deviceId)) { afterDelete }
    expectClientError("a deactivated device's token no longer lists its group", 404, ErrorResponse.Error.NOT_FOUND) {
        s.b.devices.listDevices(s.group)
    }
}
